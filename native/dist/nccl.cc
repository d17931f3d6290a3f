// The NCCL backend (CUDA). ProcessGroupNCCL.hpp needs CUDA's runtime headers, crt/host_config.h included;
// CMake compiles this file with USE_C10D_NCCL and HEIMDALL_WITH_NCCL only where it finds them, and links
// libtorch_cuda.so, which exports ProcessGroupNCCL. Elsewhere make_nccl_backend says what is missing.
#include "dist/backends.h"
#include "errors.h"

#ifdef HEIMDALL_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace heimdall::dist {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, int local_rank) {
#ifdef HEIMDALL_WITH_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
#else
  (void)store, (void)rank, (void)size, (void)timeout, (void)local_rank;
  throw Error(kErrDevice,
              "backend nccl is not available: this heimdall-torch addon was built without CUDA's runtime headers "
              "(crt/host_config.h); rebuild it where the CUDA toolkit is installed (CUDA_HOME), or use backend gloo");
#endif
}

}  // namespace heimdall::dist
