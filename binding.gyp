# node-gyp entry point, for tools that drive node-gyp (`node-gyp rebuild`, electron-rebuild, prebuild
# tooling). The build itself is CMakeLists.txt: this target runs lib/install/gyp_build.mjs, which builds with
# cmake-js (same libtorch discovery, same flags) into build/cmake and copies the addon, the loader shim and
# the build record into node-gyp's product directory (build/Release), where node-gyp-build finds them.
# npm does not run node-gyp on install: package.json's install script (lib/install/install.mjs) takes that
# role and uses the prebuild when one fits.
{
  "targets": [
    {
      "target_name": "heimdall_torch",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_js_build",
          "inputs": ["<(module_root_dir)/CMakeLists.txt"],
          "outputs": ["<(PRODUCT_DIR)/heimdall_torch.node"],
          "action": ["node", "<(module_root_dir)/lib/install/gyp_build.mjs", "<(PRODUCT_DIR)"]
        }
      ]
    }
  ]
}
