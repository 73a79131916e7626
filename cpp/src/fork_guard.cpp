#include "fork_guard.hpp"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "ringflow/errors.hpp"

namespace ringflow {
namespace {

// Relaxed is enough: the handler runs in the child's only thread before fork() returns there, so
// every later read in that process is sequenced after it.
std::atomic<std::uint64_t> g_generation{0};
std::atomic<long> g_parent_pid{0};
std::atomic<bool> g_exit_quickly{false};

// In a child, ONNX Runtime's static destructors would join or destroy the parent's thread-pool
// threads and conditions, which do not exist here, and exit() would hang in them. This handler
// runs first (exit handlers run in reverse order of registration, and ORT registered its own
// when it was loaded, before the fork): it flushes stdio and ends the process with the exit
// status, skipping the handlers registered before it. Python has finalized itself by then.
void exit_now(int status, void*) {
  std::fflush(nullptr);
  ::_exit(status);
}

void in_child() noexcept {
  g_generation.fetch_add(1, std::memory_order_relaxed);
  if (g_exit_quickly.load(std::memory_order_relaxed)) ::on_exit(exit_now, nullptr);
}
void before_fork() noexcept { g_parent_pid.store(static_cast<long>(::getpid()), std::memory_order_relaxed); }

}  // namespace

std::uint64_t fork_generation() noexcept {
  static const bool registered = (::pthread_atfork(before_fork, nullptr, in_child), true);
  (void)registered;
  return g_generation.load(std::memory_order_relaxed);
}

void exit_quickly_in_forked_children() noexcept {
  fork_generation();  // registers the handlers
  g_exit_quickly.store(true, std::memory_order_relaxed);
}

void check_not_forked(std::uint64_t generation, const char* what) {
  if (generation == fork_generation()) return;
  throw Error(std::string(what) + " was created in process " +
              std::to_string(g_parent_pid.load(std::memory_order_relaxed)) +
              " before fork(); its threads do not exist in this child process (" +
              std::to_string(::getpid()) + "). Load the Model and build the Run again in the child.");
}

}  // namespace ringflow
