// SerialThread: one long-lived native thread that runs submitted work, one piece at a time.
//
// An Engine does all of its work (epochs, evaluation, prediction, checkpoints) on its own SerialThread
// instead of whichever libuv pool thread picks up the request. glibc gives each thread that allocates its
// own malloc arena, and libtorch keeps per-thread state (autograd and autocast modes, the current CUDA
// stream); with work hopping between pool threads a training process kept one arena of freed activations
// per pool thread (peak RSS ~2.5 GB instead of ~1.9 GB for convnext_tiny at 224² batch 8). The libuv
// thread that accepted the request only waits, so the JavaScript thread is never blocked.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace heimdall::napi {

class SerialThread {
 public:
  SerialThread();
  ~SerialThread();  // finishes queued work, then joins
  SerialThread(const SerialThread&) = delete;
  SerialThread& operator=(const SerialThread&) = delete;

  // Runs `fn` on this thread and returns when it has finished; an exception thrown by `fn` is rethrown
  // here. Called from this thread itself, runs `fn` inline.
  void Run(const std::function<void()>& fn);

 private:
  // Shared with the thread, so that the thread may outlive this object when its last owner lets go of
  // it from inside a job (the destructor then detaches instead of joining itself).
  struct Queue {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::function<void()>> jobs;
    bool closing = false;
  };
  static void Loop(std::shared_ptr<Queue> q);

  std::shared_ptr<Queue> queue_;
  std::thread thread_;
};

}  // namespace heimdall::napi
