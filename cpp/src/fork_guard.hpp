// fork() copies a process's memory but only the calling thread. A Run or an ONNX Runtime session
// carried into the child refers to threads that do not exist there: using it would hang or
// crash, and so would joining those threads at exit. Objects record the generation they were made
// in; a child sees a newer one, refuses to use them, and leaks them rather than join ghosts.
#pragma once

#include <cstdint>
#include <string>

namespace ringflow {

// Incremented in every child by a pthread_atfork handler (registered on first call).
std::uint64_t fork_generation() noexcept;

// Called once ONNX Runtime is loaded: from then on, a child forked from this process ends at exit()
// without running the exit handlers registered before the fork (ORT's static destructors, which
// would wait forever on the parent's threads).
void exit_quickly_in_forked_children() noexcept;

// Throws ringflow::Error naming `what` if `generation` is not this process's.
void check_not_forked(std::uint64_t generation, const char* what);

}  // namespace ringflow
