#include "napi/serial_thread.h"

#include <pthread.h>

#include <future>

namespace heimdall::napi {

SerialThread::SerialThread() : queue_(std::make_shared<Queue>()), thread_([q = queue_] { Loop(q); }) {}

SerialThread::~SerialThread() {
  {
    std::lock_guard<std::mutex> lock(queue_->mutex);
    queue_->closing = true;
  }
  queue_->wake.notify_one();
  if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();
  else if (thread_.joinable()) thread_.join();
}

void SerialThread::Run(const std::function<void()>& fn) {
  if (std::this_thread::get_id() == thread_.get_id()) {
    fn();
    return;
  }
  std::packaged_task<void()> task(fn);
  std::future<void> done = task.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_->mutex);
    queue_->jobs.emplace_back([&task] { task(); });
  }
  queue_->wake.notify_one();
  done.get();  // waits; rethrows what fn threw
}

void SerialThread::Loop(std::shared_ptr<Queue> q) {
  pthread_setname_np(pthread_self(), "heimdall-engine");  // OpenMP workers it starts inherit the name
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(q->mutex);
      q->wake.wait(lock, [&q] { return q->closing || !q->jobs.empty(); });
      if (q->jobs.empty()) return;  // closing and nothing left
      job = std::move(q->jobs.front());
      q->jobs.pop_front();
    }
    job();  // a packaged_task: fn's exception goes to its future, nothing throws here
  }
}

}  // namespace heimdall::napi
