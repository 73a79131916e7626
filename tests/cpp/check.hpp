// The smallest test harness that does the job: named test functions, a few assertion macros and a
// main() helper. No dependencies, so the tests build wherever the engine builds.
//
//   TEST(ring_is_fifo) { CHECK_EQ(pop(), 1); }
//   int main(int argc, char** argv) { return check::run_all(argc, argv); }
//
// A failed CHECK throws check::Failure, which ends the test and is reported by run_all(). That only
// works on the test's own thread: worker threads record what they observe, and the test CHECKs it
// after join().
#pragma once

#include <chrono>
#include <cstdio>
#include <exception>
#include <iterator>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace check {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TestCase {
  const char* name;
  void (*body)();
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

struct Registrar {
  Registrar(const char* name, void (*body)()) { registry().push_back({name, body}); }
};

[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  std::ostringstream out;
  out << file << ':' << line << ": " << what;
  throw Failure(out.str());
}

template <typename T, typename = void>
struct Printable : std::false_type {};
template <typename T>
struct Printable<T, std::void_t<decltype(std::declval<std::ostream&>() << std::declval<const T&>())>>
    : std::true_type {};

template <typename T, typename = void>
struct Iterable : std::false_type {};
template <typename T>
struct Iterable<T, std::void_t<decltype(std::begin(std::declval<const T&>()))>> : std::true_type {};

// How a value appears in a CHECK_EQ failure.
template <typename T>
std::string show(const T& value) {
  std::ostringstream out;
  if constexpr (std::is_enum_v<T>) {
    out << static_cast<long long>(value);
  } else if constexpr (std::is_same_v<T, std::string> || std::is_convertible_v<T, const char*>) {
    out << '"' << value << '"';
  } else if constexpr (Printable<T>::value) {
    out << value;
  } else if constexpr (Iterable<T>::value) {
    out << '{';
    const char* separator = "";
    for (const auto& element : value) {
      out << separator << show(element);
      separator = ", ";
    }
    out << '}';
  } else {
    out << "<" << sizeof(T) << "-byte value>";
  }
  return out.str();
}

template <typename A, typename B>
void check_eq(const A& actual, const B& expected, const char* actual_text, const char* expected_text,
              const char* file, int line) {
  if (actual == expected) return;
  fail(file, line,
       std::string("CHECK_EQ(") + actual_text + ", " + expected_text + "): " + show(actual) +
           " != " + show(expected));
}

// Runs the tests named on the command line, or every test if none are named. Prints one line per
// test and a final "N passed, N failed" line; returns nonzero if any test failed.
inline int run_all(int argc, char** argv) {
  std::vector<std::string> selected(argv + 1, argv + argc);
  int passed = 0;
  int failed = 0;
  for (const std::string& name : selected) {
    bool known = false;
    for (const TestCase& test : registry()) known = known || name == test.name;
    if (!known) {
      std::printf("FAIL %s: no such test\n", name.c_str());
      ++failed;
    }
  }
  for (const TestCase& test : registry()) {
    bool wanted = selected.empty();
    for (const std::string& name : selected) wanted = wanted || name == test.name;
    if (!wanted) continue;
    const auto start = std::chrono::steady_clock::now();
    std::string error;
    try {
      test.body();
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (error.empty()) {
      std::printf("PASS %s (%lld ms)\n", test.name, static_cast<long long>(ms));
      ++passed;
    } else {
      std::printf("FAIL %s (%lld ms): %s\n", test.name, static_cast<long long>(ms), error.c_str());
      ++failed;
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace check

#define TEST(name)                                                \
  static void name();                                             \
  static const check::Registrar name##_registrar(#name, &name);   \
  static void name()

#define CHECK(condition)                                                             \
  do {                                                                               \
    if (!(condition)) check::fail(__FILE__, __LINE__, "CHECK(" #condition ") failed"); \
  } while (0)

#define CHECK_EQ(actual, expected) \
  check::check_eq((actual), (expected), #actual, #expected, __FILE__, __LINE__)

// Passes if `expr` throws `Type` (or a subclass) whose what() contains `text`.
#define CHECK_THROWS_WITH(expr, Type, text)                                                      \
  do {                                                                                           \
    std::string check_message_;                                                                  \
    bool check_thrown_ = false;                                                                  \
    try {                                                                                        \
      (void)(expr);                                                                              \
    } catch (const Type& e) {                                                                    \
      check_thrown_ = true;                                                                      \
      check_message_ = e.what();                                                                 \
    } catch (const std::exception& e) {                                                          \
      check::fail(__FILE__, __LINE__,                                                            \
                  std::string(#expr " threw the wrong exception type: ") + e.what());            \
    }                                                                                            \
    if (!check_thrown_) check::fail(__FILE__, __LINE__, #expr " did not throw " #Type);          \
    if (check_message_.find(text) == std::string::npos) {                                        \
      check::fail(__FILE__, __LINE__,                                                            \
                  std::string(#Type " from " #expr " does not mention \"") + (text) +            \
                      "\": " + check_message_);                                                  \
    }                                                                                            \
  } while (0)

#define CHECK_THROWS(expr, Type) CHECK_THROWS_WITH(expr, Type, "")
