# The native addon (cmake-js, incremental) and the TypeScript build.
npm run build
