// heimdall-torch's libtorch loader shim: a Node-API module with no libtorch dependency of its own.
//
// The main addon (heimdall_torch.node) lists libtorch.so, libtorch_cpu.so and libc10.so as DT_NEEDED by
// soname and carries no RUNPATH, so the dynamic linker alone cannot find them. lib/loader/libtorch.ts finds a
// compatible libtorch folder first and calls preload() here, which dlopens those libraries by full path with
// RTLD_NOW | RTLD_GLOBAL. When the main addon is then loaded, glibc matches its DT_NEEDED sonames against the
// libraries already in the process, so no LD_LIBRARY_PATH is needed. Libraries are never closed.
//
// It also reads NVIDIA GPUs through NVML for the tracker's system metrics (nvml.cc), for the same reason: the
// tracker's worker thread loads the shim, never libtorch.
//
// Only plain C APIs here (dlfcn + Node-API): it must load on any glibc Linux, with or without libtorch.
#include <dlfcn.h>
#include <link.h>
#include <node_api.h>

#include <string>

#include "nvml.h"

namespace {

napi_value Throw(napi_env env, const std::string& msg) {
  napi_throw_error(env, "HEIMDALL_LIBTORCH_LOAD", msg.c_str());
  return nullptr;
}

bool GetString(napi_env env, napi_value v, std::string* out) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return false;
  out->resize(len);
  return napi_get_value_string_utf8(env, v, out->data(), len + 1, &len) == napi_ok;
}

// preload(paths: string[]): dlopen each path in order (RTLD_NOW | RTLD_GLOBAL). Throws with dlerror()'s
// message, naming the path, on the first failure; libraries loaded before it stay loaded.
napi_value Preload(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  bool is_array = false;
  if (argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array)
    return Throw(env, "preload: expected an array of library paths");
  uint32_t n = 0;
  napi_get_array_length(env, argv[0], &n);
  for (uint32_t i = 0; i < n; ++i) {
    napi_value item;
    std::string path;
    if (napi_get_element(env, argv[0], i, &item) != napi_ok || !GetString(env, item, &path))
      return Throw(env, "preload: library paths must be strings");
    dlerror();
    if (!dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
      const char* err = dlerror();
      return Throw(env, std::string(err ? err : "dlopen failed") + " (loading " + path + ")");
    }
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

// loadedPath(soname: string): the full path of a library with that soname already in the process, or null.
napi_value LoadedPath(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string name;
  if (argc < 1 || !GetString(env, argv[0], &name)) return Throw(env, "loadedPath: expected a library name");
  napi_value result;
  napi_get_null(env, &result);
  void* handle = dlopen(name.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (handle) {
    struct link_map* map = nullptr;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name)
      napi_create_string_utf8(env, map->l_name, NAPI_AUTO_LENGTH, &result);
    dlclose(handle);  // only drops the reference RTLD_NOLOAD added
  }
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"preload", nullptr, Preload, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"loadedPath", nullptr, LoadedPath, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  heimdall_loader::DefineNvml(env, exports);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
