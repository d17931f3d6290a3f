#include "common/threads.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include <ATen/Parallel.h>

// libgomp's (or another OpenMP runtime's) per-thread setter, resolved at load time from the runtime libtorch
// loaded; weak, so a libtorch without OpenMP (the native thread-pool backend) loads too.
extern "C" void omp_set_num_threads(int) __attribute__((weak));

namespace heimdall {

namespace {
std::atomic<int> libtorch_default{0};  // libtorch's intra-op default, recorded before a thread is set to one
std::atomic<int> user_default{0};      // set_default_intraop_threads()

int record_libtorch_default() {
  const int n = at::get_num_threads();  // runs ATen's lazy per-thread init: it must not undo a setting later
  int expected = 0;
  libtorch_default.compare_exchange_strong(expected, n);
  return n;
}
}  // namespace

void use_one_intraop_thread_here() {
  record_libtorch_default();
  if (omp_set_num_threads) omp_set_num_threads(1);
}

void set_intraop_threads_here(int n) {
  record_libtorch_default();
  if (n < 1) n = 1;
  if (omp_set_num_threads) {
    omp_set_num_threads(n);
    return;
  }
  // A libtorch without OpenMP: one pool for the whole process, sized once (its set_num_threads refuses a second
  // size after parallel work has started): best effort.
  try {
    if (at::get_num_threads() != n) at::set_num_threads(n);
  } catch (const std::exception&) {
  }
}

void run_on_fresh_thread(const std::function<void()>& fn) {
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      set_intraop_threads_here(default_intraop_threads());
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error) std::rethrow_exception(error);
}

int default_intraop_threads() {
  if (const int n = user_default.load(); n > 0) return n;
  int n = libtorch_default.load();
  if (n <= 0) n = record_libtorch_default();
  return std::max(1, std::min(n, available_cpus()));
}

void set_default_intraop_threads(int n) { user_default.store(n > 0 ? n : 0); }

OneIntraopThread::OneIntraopThread() : previous_(record_libtorch_default()) {
  if (omp_set_num_threads) omp_set_num_threads(1);
}

OneIntraopThread::~OneIntraopThread() {
  if (omp_set_num_threads) omp_set_num_threads(previous_);
}

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

}  // namespace heimdall
