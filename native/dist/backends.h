// The two backend constructors, each in its own file: gloo.cc (needs Gloo's headers, from libgloo-dev) and
// nccl.cc (needs CUDA's runtime headers; compiled only where CMake finds them, HEIMDALL_WITH_NCCL).
// Internal to native/dist: only group.cc includes this.
#pragma once

#include <chrono>
#include <string>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace heimdall::dist {

// CPU collectives over TCP. `bind_host`: the address this rank's Gloo device listens on (loopback when the
// master is local), else GLOO_SOCKET_IFNAME's interface or the host name's address, as torch.distributed does.
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, const std::string& bind_host);

// CUDA collectives on device cuda:local_rank; throws Error(kErrDevice) in a build without NCCL support.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, int local_rank);

}  // namespace heimdall::dist
