# The native addon (cmake-js, incremental), the TypeScript build, and the developer tools the tests use
# (ONNX export tool, Heimdall data tool) in build-tools/.
npm run build
cmake -S . -B build-tools -G Ninja -DHEIMDALL_BUILD_TOOLS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-tools --target export_onnx heimdall_data_tool -j2
