// Thread placement for the training process: how many intra-op threads the engine uses, and how other native
// threads (the loader's prefetch thread, data workers) keep out of the training step's way.
//
// libtorch's CPU build runs intra-op parallelism on OpenMP. OpenMP gives every thread that starts a parallel
// region its own team of worker threads, so an ATen op on a second native thread (a loader, a data worker)
// starts a second team next to the training step's: four busy threads on two cores, and the step's team
// waits at its barriers for a worker the kernel has descheduled. Worse, libgomp counts every thread of every
// team: once they outnumber the CPUs it stops spin-waiting (GOMP_SPINCOUNT drops from 300000 to 1000), and every
// one of the ~1000 small parallel regions of a training step puts its workers to sleep and wakes them with a
// futex. (c10::ParallelGuard does not prevent any of this with the OpenMP backend: at::in_parallel_region()
// only asks omp_in_parallel().)
//
// The rule in this addon: the engine's thread (napi/serial_thread.h) is the only thread with an OpenMP team.
// The JavaScript thread, libuv's pool threads, the loader's prefetch thread and data workers run their ATen ops
// single-threaded.
#pragma once

#include <functional>

namespace heimdall {

// While it lives, ATen ops called from this thread run single-threaded (OpenMP's per-thread thread count);
// every other thread keeps its setting, and this thread's comes back when the guard ends.
class OneIntraopThread {
 public:
  OneIntraopThread();
  ~OneIntraopThread();
  OneIntraopThread(const OneIntraopThread&) = delete;
  OneIntraopThread& operator=(const OneIntraopThread&) = delete;

 private:
  int previous_;
};

// Sets this thread's ATen intra-op thread count to one for good (the JavaScript thread: see napi/addon.cc).
// The first call also records libtorch's default count (see default_intraop_threads()).
void use_one_intraop_thread_here();

// Sets this thread's ATen intra-op thread count (OpenMP's per-thread setting; other threads keep theirs).
void set_intraop_threads_here(int n);

// The intra-op thread count of an engine whose options do not name one: the count given to
// set_default_intraop_threads(), else libtorch's default (physical cores, or OMP_NUM_THREADS when set), capped
// at the CPUs this process may run on (a container or taskset may allow fewer than the machine has).
int default_intraop_threads();
void set_default_intraop_threads(int n);  // n ≤ 0: back to the automatic choice

// Runs `fn` on a new thread with the default intra-op thread count and waits for it; rethrows what `fn` threw.
// For one-off heavy work requested from a single-threaded thread (a model's weight initialisation): its OpenMP
// team exists only while it runs, and ends with the thread.
void run_on_fresh_thread(const std::function<void()>& fn);

// The number of CPUs this process may run on (sched_getaffinity; cgroup CPU quotas are not consulted).
int available_cpus();

}  // namespace heimdall
