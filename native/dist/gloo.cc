// The Gloo backend. ProcessGroupGloo.hpp includes Gloo's headers, which the torch wheel does not ship: they come
// from Debian's libgloo-dev. Only the gloo types' names are needed here (the class holds them behind
// shared_ptr; its inline members that touch gloo objects are not used), and libtorch_cpu.so exports the Gloo
// code itself, so a different Gloo snapshot's headers are enough. Compiled with USE_DISTRIBUTED and
// USE_C10D_GLOO, as the wheel's own CMake config defines them,
// and HEIMDALL_WITH_GLOO where CMake found the headers (elsewhere the addon builds and says what to install).
#include <cstdlib>

#include "dist/backends.h"
#include "errors.h"

#ifdef HEIMDALL_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

namespace heimdall::dist {

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, const std::string& bind_host) {
#ifndef HEIMDALL_WITH_GLOO
  (void)store, (void)rank, (void)size, (void)timeout, (void)bind_host;
  throw Error(kErrDevice,
              "backend gloo is not available: this heimdall-torch addon was built without Gloo's headers; install them "
              "(Debian/Ubuntu: apt-get install libgloo-dev) and rebuild the addon (npm run build:native)");
#else
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (!bind_host.empty())
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind_host));
  else if (ifname && *ifname)
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  // Collectives are issued one at a time from the engine's thread: one worker thread serves them.
  options->threads = 1;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
#endif
}

}  // namespace heimdall::dist
