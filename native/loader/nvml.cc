// NVIDIA GPUs through NVML (libnvidia-ml.so.1, which the NVIDIA driver installs), opened at run time.
//
// For the tracker's system metrics (lib/tracking/system_metrics.ts), the values MLflow's GPUMonitor reads through
// pynvml: utilization, memory used/total, power draw and the enforced power limit. It is part of the loader shim
// because the shim is plain C (dlfcn + Node-API), no libtorch: the tracker's worker thread loads it without
// loading libtorch, and it works the same with a CPU or a CUDA build of the addon. No NVML header is needed: the
// few functions and structs used are declared here as NVML's C API defines them (nvml.h, stable since NVML 5).
//
// A machine without the driver has no libnvidia-ml: nvmlOpen reports 'absent' and the tracker logs no GPU rows.
// Opened libraries are initialized once per process and never shut down or closed (NVML is thread-safe).
#include "nvml.h"

#include <dlfcn.h>

#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace heimdall_loader {
namespace {

// ---- NVML's C API (nvml.h) ------------------------------------------------------------------------------------
using nvmlReturn_t = int;  // an enum in nvml.h; NVML_SUCCESS = 0
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu;     // percent of the sample period a kernel ran
  unsigned int memory;  // percent of the sample period device memory was read or written
};
struct nvmlMemory_t {  // nvmlDeviceGetMemoryInfo (v1), the one pynvml calls by default
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr nvmlReturn_t kNvmlSuccess = 0;

struct Nvml {
  std::string status;   // "ok", "absent" (no library), "failed" (library there, but unusable)
  std::string message;  // why not "ok"
  std::vector<nvmlDevice_t> devices;
  nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*power)(nvmlDevice_t, unsigned int*) = nullptr;        // milliwatts
  nvmlReturn_t (*power_limit)(nvmlDevice_t, unsigned int*) = nullptr;  // milliwatts
};

std::mutex g_mutex;
std::map<std::string, Nvml>& Opened() {
  static auto* opened = new std::map<std::string, Nvml>();  // never destroyed: worker threads may outlive exit handlers
  return *opened;
}

template <typename F>
F Symbol(void* lib, const char* name, const char* fallback = nullptr) {
  void* p = dlsym(lib, name);
  if (!p && fallback) p = dlsym(lib, fallback);
  return reinterpret_cast<F>(p);
}

Nvml Open(const std::string& path) {
  Nvml n;
  dlerror();
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* err = dlerror();
    n.status = "absent";
    n.message = err ? err : ("cannot open " + path);
    return n;
  }
  n.status = "failed";
  auto init = Symbol<nvmlReturn_t (*)()>(lib, "nvmlInit_v2", "nvmlInit");
  auto count = Symbol<nvmlReturn_t (*)(unsigned int*)>(lib, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
  auto by_index = Symbol<nvmlReturn_t (*)(unsigned int, nvmlDevice_t*)>(lib, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
  auto error_string = Symbol<const char* (*)(nvmlReturn_t)>(lib, "nvmlErrorString");
  n.utilization = Symbol<decltype(n.utilization)>(lib, "nvmlDeviceGetUtilizationRates");
  n.memory = Symbol<decltype(n.memory)>(lib, "nvmlDeviceGetMemoryInfo");
  n.power = Symbol<decltype(n.power)>(lib, "nvmlDeviceGetPowerUsage");
  n.power_limit = Symbol<decltype(n.power_limit)>(lib, "nvmlDeviceGetEnforcedPowerLimit");
  if (!init || !count || !by_index) {
    n.message = path + " lacks nvmlInit / nvmlDeviceGetCount / nvmlDeviceGetHandleByIndex (not an NVML library?)";
    return n;  // the library stays open, as every library the shim opens
  }
  auto describe = [&](const char* call, nvmlReturn_t rc) {
    const char* what = error_string ? error_string(rc) : nullptr;
    return std::string(call) + " returned " + std::to_string(rc) + (what ? std::string(" (") + what + ")" : std::string());
  };
  if (nvmlReturn_t rc = init(); rc != kNvmlSuccess) {
    n.message = describe("nvmlInit", rc);
    return n;
  }
  unsigned int devices = 0;
  if (nvmlReturn_t rc = count(&devices); rc != kNvmlSuccess) {
    n.message = describe("nvmlDeviceGetCount", rc);
    return n;
  }
  for (unsigned int i = 0; i < devices; ++i) {
    nvmlDevice_t d = nullptr;
    if (nvmlReturn_t rc = by_index(i, &d); rc != kNvmlSuccess) {
      n.message = describe(("nvmlDeviceGetHandleByIndex(" + std::to_string(i) + ")").c_str(), rc);
      return n;
    }
    n.devices.push_back(d);
  }
  n.status = "ok";
  return n;
}

// ---- Node-API glue (plain C API: the shim has no node-addon-api) ----------------------------------------------
napi_value Str(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}

napi_value Num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

void Set(napi_env env, napi_value obj, const char* key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}

const Nvml* Lookup(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& opened = Opened();
  auto it = opened.find(path);
  if (it == opened.end()) it = opened.emplace(path, Open(path)).first;
  return &it->second;
}

std::string PathArg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string path = "libnvidia-ml.so.1";
  napi_valuetype type = napi_undefined;
  if (argc >= 1 && napi_typeof(env, argv[0], &type) == napi_ok && type == napi_string) {
    size_t len = 0;
    napi_get_value_string_utf8(env, argv[0], nullptr, 0, &len);
    path.resize(len);
    napi_get_value_string_utf8(env, argv[0], path.data(), len + 1, &len);
  }
  return path;
}

// nvmlOpen(library = 'libnvidia-ml.so.1'): { status: 'ok' | 'absent' | 'failed', message }.
// Opens and initializes the library once per path; later calls return the same answer.
napi_value NvmlOpen(napi_env env, napi_callback_info info) {
  const Nvml* n = Lookup(PathArg(env, info));
  napi_value out;
  napi_create_object(env, &out);
  Set(env, out, "status", Str(env, n->status));
  Set(env, out, "message", Str(env, n->message));
  return out;
}

// nvmlSample(library = 'libnvidia-ml.so.1'): one entry per GPU, { index, utilization (%), memoryUsed, memoryTotal
// (bytes), power, powerLimit (milliwatts) }; a value NVML does not give for that GPU (not supported, lost) is NaN.
// [] when the library did not open.
napi_value NvmlSample(napi_env env, napi_callback_info info) {
  const Nvml* n = Lookup(PathArg(env, info));
  napi_value arr;
  napi_create_array_with_length(env, n->devices.size(), &arr);
  const double nan = std::nan("");
  for (size_t i = 0; i < n->devices.size(); ++i) {
    nvmlDevice_t d = n->devices[i];
    nvmlUtilization_t u{};
    nvmlMemory_t m{};
    unsigned int mw = 0, limit = 0;
    const bool has_u = n->utilization && n->utilization(d, &u) == kNvmlSuccess;
    const bool has_m = n->memory && n->memory(d, &m) == kNvmlSuccess;
    const bool has_p = n->power && n->power(d, &mw) == kNvmlSuccess;
    const bool has_l = n->power_limit && n->power_limit(d, &limit) == kNvmlSuccess;
    napi_value g;
    napi_create_object(env, &g);
    Set(env, g, "index", Num(env, static_cast<double>(i)));
    Set(env, g, "utilization", Num(env, has_u ? u.gpu : nan));
    Set(env, g, "memoryUsed", Num(env, has_m ? static_cast<double>(m.used) : nan));
    Set(env, g, "memoryTotal", Num(env, has_m ? static_cast<double>(m.total) : nan));
    Set(env, g, "power", Num(env, has_p ? mw : nan));
    Set(env, g, "powerLimit", Num(env, has_l ? limit : nan));
    napi_set_element(env, arr, static_cast<uint32_t>(i), g);
  }
  return arr;
}

}  // namespace

void DefineNvml(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"nvmlOpen", nullptr, NvmlOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"nvmlSample", nullptr, NvmlSample, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace heimdall_loader
