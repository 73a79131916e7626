// Whether this build runs under ThreadSanitizer, which slows atomics and thread hand-offs by an
// order of magnitude: stress tests use fewer iterations there to stay within their time budget.
#pragma once

#if defined(__SANITIZE_THREAD__)  // GCC
#define RINGFLOW_TEST_TSAN 1
#elif defined(__has_feature)  // Clang
#if __has_feature(thread_sanitizer)
#define RINGFLOW_TEST_TSAN 1
#endif
#endif

#ifdef RINGFLOW_TEST_TSAN
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif

// `normal` iterations in a plain build, `tsan` under ThreadSanitizer.
template <typename T>
constexpr T iterations(T normal, T tsan) {
  return kThreadSanitizer ? tsan : normal;
}
