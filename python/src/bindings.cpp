// The Python bindings, all in one place. Names match the C++ API; Python conveniences live in
// python/ringflow/.
//
// GIL rule: numpy arrays are read (and copied into Tensors) while the GIL is held; the GIL is then
// released for every call that can wait or compute. The engine never touches a Python object.
#include <pybind11/gil_safe_call_once.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include <algorithm>
#include <any>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ringflow/ringflow.hpp"

namespace py = pybind11;
using namespace ringflow;

namespace {

constexpr DType kDTypes[] = {DType::Float32, DType::Float16, DType::Float64, DType::Int8, DType::UInt8,
                              DType::Int16,   DType::Int32,   DType::Int64,   DType::Bool};

// numpy dtype objects for our dtypes, made once: building one from its name costs microseconds,
// which matters on a per-sample path. Deliberately never released (they outlive the module).
py::dtype to_numpy_dtype(DType dtype) {
  static const auto* cache = [] {
    auto* table = new std::vector<py::dtype>();
    for (DType d : kDTypes) table->push_back(py::dtype(dtype_name(d)));
    return table;
  }();
  for (std::size_t i = 0; i < std::size(kDTypes); ++i) {
    if (kDTypes[i] == dtype) return (*cache)[i];
  }
  throw DTypeError(std::string("no numpy dtype for ") + dtype_name(dtype));
}

DType from_numpy_dtype(const py::dtype& dt) {
  // Kind and item size identify the type without allocating; non-native byte order is refused.
  const char order = dt.byteorder();
  constexpr char kNativeOrder = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? '<' : '>';
  const bool native = order == '=' || order == '|' || order == kNativeOrder;
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (native) {
    if (kind == 'f' && size == 4) return DType::Float32;
    if (kind == 'f' && size == 2) return DType::Float16;
    if (kind == 'f' && size == 8) return DType::Float64;
    if (kind == 'i' && size == 1) return DType::Int8;
    if (kind == 'u' && size == 1) return DType::UInt8;
    if (kind == 'i' && size == 2) return DType::Int16;
    if (kind == 'i' && size == 4) return DType::Int32;
    if (kind == 'i' && size == 8) return DType::Int64;
    if (kind == 'b' && size == 1) return DType::Bool;
  }
  std::string supported;
  for (DType d : kDTypes) supported += std::string(supported.empty() ? "" : ", ") + dtype_name(d);
  throw DTypeError("arrays of dtype " + py::str(dt).cast<std::string>() +
                   " are not supported; use one of (in native byte order): " + supported);
}

// A numpy view of the tensor's buffer: no copy; the array keeps the buffer alive.
py::array array_from_tensor(const Tensor& tensor) {
  auto* keep = new Tensor(tensor);
  py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  std::vector<py::ssize_t> shape(tensor.shape().begin(), tensor.shape().end());
  MutableMapping m = keep->map_write();
  return py::array(to_numpy_dtype(tensor.dtype()), shape, m.data, owner);
}

// A Python input as a Sample, in two steps. First only its dtypes and shapes (Tensors with no data):
// what a Run or Model checks. Then, once that passed, its data: copied, so the caller may reuse or
// free its arrays at once, or borrowed, for a call that is done with them before it returns. So a
// wrong-shaped 1 GB array is refused without being copied, and each input is converted once.
//
// Accepted: one array, a list or tuple of arrays (the model's inputs in order), a dict of
// name -> array, or a Sample; an rf.Tensor wherever an array goes (shared, not copied).
class PyInputs {
 public:
  PyInputs(const py::handle& inputs, const std::string& stream_id = "", std::int64_t frame_id = -1,
           std::int64_t pts_ns = -1) {
    if (py::isinstance<Sample>(inputs)) {
      sample_ = inputs.cast<Sample>();
    } else if (py::isinstance<py::dict>(inputs)) {
      for (auto item : inputs.cast<py::dict>()) {
        sample_.names.push_back(py::str(item.first).cast<std::string>());
        add(item.second);
      }
    } else if (py::isinstance<py::list>(inputs) || py::isinstance<py::tuple>(inputs)) {
      for (auto item : inputs) add(item);
      sample_.names.resize(sample_.tensors.size());
    } else {
      add(inputs);
      sample_.names.resize(1);
    }
    arrays_.resize(sample_.tensors.size());
    if (!stream_id.empty()) sample_.stream_id = stream_id;
    if (frame_id >= 0) sample_.frame_id = frame_id;
    if (pts_ns >= 0) sample_.pts_ns = pts_ns;
  }

  // Dtypes and shapes only, for check().
  const Sample& shapes() const { return sample_; }

  // The sample with its data: copies of the arrays, or, with `borrow`, contiguous arrays used in
  // place. A non-contiguous array is gathered by numpy straight into a new buffer, never read with
  // the wrong strides.
  Sample take(bool borrow = false) {
    for (std::size_t i = 0; i < arrays_.size(); ++i) {
      if (!arrays_[i]) continue;  // a Tensor: shared
      Tensor& t = sample_.tensors[i];
      const auto array = py::reinterpret_borrow<py::array>(arrays_[i]);
      if (array.flags() & py::array::c_style) {
        void* data = const_cast<void*>(array.data());
        t = borrow ? Tensor::borrow(t.dtype(), t.shape(), data) : Tensor::copy_from(t.dtype(), t.shape(), data);
      } else {
        t = Tensor::empty(t.dtype(), t.shape());
        numpy_copyto()(array_from_tensor(t), array);
      }
    }
    return std::move(sample_);
  }

 private:
  void add(const py::handle& obj) {
    if (py::isinstance<Tensor>(obj)) {
      sample_.tensors.push_back(obj.cast<Tensor>());
      arrays_.resize(sample_.tensors.size());
      return;
    }
    if (!py::isinstance<py::array>(obj)) {
      throw DTypeError(std::string("expected a numpy array or ringflow.Tensor, got ") +
                       py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    }
    auto array = py::reinterpret_borrow<py::array>(obj);
    Shape shape(array.shape(), array.shape() + array.ndim());
    sample_.tensors.push_back(Tensor::borrow(from_numpy_dtype(array.dtype()), std::move(shape), nullptr));
    arrays_.resize(sample_.tensors.size());
    arrays_.back() = std::move(array);
  }

  static const py::object& numpy_copyto() {
    static const auto* copyto = new py::object(py::module_::import("numpy").attr("copyto"));  // never freed
    return *copyto;
  }

  Sample sample_;
  // Per tensor: its numpy array, or null where a Tensor was given. (py::object: a default py::array
  // is an empty array, not null.)
  std::vector<py::object> arrays_;
};

// The sample to push, checked against the Run before its data is copied.
Sample checked_sample(const Run& run, const py::handle& inputs, const std::string& stream_id,
                      std::int64_t frame_id, std::int64_t pts_ns) {
  PyInputs in(inputs, stream_id, frame_id, pts_ns);
  run.check(in.shapes());
  return in.take();
}

// The wait check for calls that wait with the GIL released: Ctrl-C (any signal handler that
// raises) interrupts the wait within one check interval. Signal handlers only run on the main
// thread; elsewhere this returns at once.
void raise_pending_signals() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

// Runs `call` with the GIL released and Ctrl-C able to interrupt its waits.
template <typename Call>
auto waiting(Call&& call) {
  py::gil_scoped_release release;
  ScopedWaitCheck check(raise_pending_signals);
  return call();
}

// RunOptions.max_shape from {name: (dims...)}, None meaning unbounded.
std::map<std::string, Shape> shape_map(const py::dict& dict) {
  std::map<std::string, Shape> shapes;
  for (auto [name, dims] : dict) {
    Shape& shape = shapes[py::str(name).cast<std::string>()];
    for (auto d : dims) shape.push_back(d.is_none() ? -1 : d.cast<std::int64_t>());
  }
  return shapes;
}

// Provider options as ORT takes them: every value a string, so {"device_id": 0} works too.
std::map<std::string, std::string> string_map(const py::dict& dict) {
  std::map<std::string, std::string> out;
  for (auto [key, value] : dict) out[py::str(key).cast<std::string>()] = py::str(value).cast<std::string>();
  return out;
}

// An exception a Python callback raised, carried through the engine (which keeps it for the next
// call on the Run) back to Python. Its what() is the one-line "Type: message", without the
// traceback error_already_set's what() carries; the traceback stays on the exception object.
struct PythonCallbackError : std::runtime_error {
  explicit PythonCallbackError(py::error_already_set raised)
      : std::runtime_error(py::str(raised.type().attr("__name__")).cast<std::string>() + ": " +
                           py::str(raised.value()).cast<std::string>()),
        error(std::move(raised)) {}
  py::error_already_set error;
};

// Calls a Python callback; an exception it raises leaves as a PythonCallbackError.
template <typename... Args>
void call_python(const py::object& fn, Args&&... args) {
  try {
    fn(std::forward<Args>(args)...);
  } catch (py::error_already_set& raised) {
    throw PythonCallbackError(std::move(raised));
  }
}

// A Python object owned from C++: released under the GIL, whichever thread lets go of it last.
std::shared_ptr<py::object> hold(const py::object& object) {
  return std::shared_ptr<py::object>(new py::object(object), [](py::object* p) {
    py::gil_scoped_acquire gil;
    delete p;
  });
}

py::object from_any(const std::any& value) {
  if (const auto* held = std::any_cast<std::shared_ptr<py::object>>(&value)) return **held;
  return py::none();
}

// OpenVINO's inputs may name inputs by index: {0: array}. Those keys become the input names.
py::object inputs_by_name(const py::object& inputs, const std::vector<std::string>& names) {
  if (!py::isinstance<py::dict>(inputs)) return inputs;
  py::dict named;
  for (auto [key, value] : inputs.cast<py::dict>()) {
    if (py::isinstance<py::int_>(key)) {
      const auto index = key.cast<std::size_t>();
      if (index >= names.size()) {
        throw ShapeError("input index " + std::to_string(index) + " is out of range: the model has " +
                         std::to_string(names.size()) + " inputs");
      }
      named[py::str(names[index])] = value;
    } else {
      named[key] = value;
    }
  }
  return named;
}

// Wraps a Python callable as on_input_drop. It runs on the pushing thread inside push(), which has
// released the GIL, so it takes the GIL to call; the callable is also released under the GIL,
// whichever thread drops the last reference.
std::function<void(const DroppedInput&)> drop_callback(const py::object& callable) {
  if (callable.is_none()) return nullptr;
  if (!PyCallable_Check(callable.ptr())) throw py::type_error("on_input_drop must be callable or None");
  std::shared_ptr<py::object> fn = hold(callable);
  // An exception leaves as a PythonCallbackError; push() keeps it as the CallbackError's cause,
  // and the translator below re-raises it in Python as that error's __cause__ (or as itself, for
  // KeyboardInterrupt and SystemExit).
  return [fn](const DroppedInput& dropped) {
    py::gil_scoped_acquire gil;
    call_python(*fn, dropped);
  };
}

bool python_is_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// On a report thread, the GIL is taken by the first callback of a round and kept for the round's
// other callbacks, then let go of by the round-end hook before the thread waits: one hand-off per
// burst of groups instead of one per group (each hand-off can cost tens of microseconds while
// another thread is running Python). Report threads run nothing else, so thread-locals suffice.
thread_local bool t_round_holds_gil = false;
thread_local PyGILState_STATE t_round_gil;

void hold_gil_for_round() {
  if (t_round_holds_gil) return;
  // While Python shuts down a thread asking for the GIL may be ended or never get it; the
  // callback's results are dropped instead (nobody is left to see them).
  if (python_is_finalizing()) throw Error("Python is shutting down; the callback was not called");
  t_round_gil = PyGILState_Ensure();
  t_round_holds_gil = true;
}

void end_round() {
  if (!t_round_holds_gil) return;
  t_round_holds_gil = false;
  PyGILState_Release(t_round_gil);
}

// Wraps a Python callable as a Run's result callback. It runs on a report thread, with the GIL
// held for its round (above); the callable is released under the GIL, whichever thread lets go.
ResultCallback result_callback(const py::object& callable) {
  if (!PyCallable_Check(callable.ptr())) throw py::type_error("set_callback needs a callable");
  std::shared_ptr<py::object> fn = hold(callable);
  return [fn](std::vector<PullResult>& results) {
    hold_gil_for_round();
    py::list group(results.size());
    for (std::size_t i = 0; i < results.size(); ++i) group[i] = py::cast(std::move(results[i]));
    call_python(*fn, group);
  };
}

// A Python callable as a Stage. It runs on the stage's own threads, taking the GIL only around the
// call: it gets the Sample and returns its new tensors (None: unchanged; a list of arrays, a dict of
// name to array, or a Sample). Returned arrays are copied, so the engine holds no Python object.
Stage python_stage(const py::object& callable, std::string name, int threads) {
  if (!PyCallable_Check(callable.ptr())) throw py::type_error("Stage needs a callable");
  if (name.empty()) {
    py::object named = py::getattr(callable, "__name__", py::none());
    name = named.is_none() ? py::str(py::type::of(callable).attr("__name__")).cast<std::string>()
                           : py::str(named).cast<std::string>();
  }
  std::shared_ptr<py::object> fn = hold(callable);
  return Stage(std::move(name), [fn](Sample& sample) {
    // While Python shuts down a thread asking for the GIL may be ended or never get it.
    if (python_is_finalizing()) throw Error("Python is shutting down; the stage was not called");
    py::gil_scoped_acquire gil;
    // One Python thread state per stage thread, kept between calls: threading.local() data
    // survives from one sample to the next, and no call pays for a new thread state.
    thread_local bool t_keeps_thread_state = false;
    if (!t_keeps_thread_state) {
      gil.inc_ref();
      t_keeps_thread_state = true;
    }
    try {
      py::object result = (*fn)(py::cast(sample));
      if (result.is_none()) return;
      Sample out = PyInputs(result).take();
      sample.names = std::move(out.names);
      sample.tensors = std::move(out.tensors);
    } catch (py::error_already_set& raised) {
      // The message is kept; the exception object (and its traceback) is let go under the GIL.
      throw Error(py::str(raised.type().attr("__name__")).cast<std::string>() + ": " +
                  py::str(raised.value()).cast<std::string>());
    }
  }, threads);
}

// ---- futures ------------------------------------------------------------------------------------

struct FutureState;

// One per asyncio event loop (made by ringflow/_aio.py): completed futures are queued here and the
// loop is woken through one file descriptor, registered with loop.add_reader: an eventfd, or a
// pipe where there is none. The engine's report thread only appends and writes the fd: it never
// takes the GIL to complete a future, and one wake-up can complete many.
class Waker {
 public:
  // pipe: use a pipe even where there is an eventfd (for tests of the fallback).
  explicit Waker(bool pipe = false) {
#ifdef __linux__
    if (!pipe) {
      read_fd_ = write_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (read_fd_ < 0) throw Error(std::string("eventfd failed: ") + std::strerror(errno));
      return;
    }
#endif
    int fds[2];
    if (::pipe(fds) != 0) throw Error(std::string("pipe failed: ") + std::strerror(errno));
    for (int fd : fds) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~Waker() {
    close(read_fd_);
    if (write_fd_ != read_fd_) close(write_fd_);
  }
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;

  int fileno() const { return read_fd_; }

  void post(std::shared_ptr<FutureState> ready) {
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      first = ready_.empty();
      ready_.push_back(std::move(ready));
    }
    // Only the first of a burst writes: the loop drains everything queued by then. (8 bytes, as
    // an eventfd needs; a pipe takes them as well.)
    if (first) {
      const std::uint64_t one = 1;
      while (write(write_fd_, &one, sizeof one) < 0 && errno == EINTR) {
      }
    }
  }

  // On the loop's thread. The fd is emptied before the list is taken, so a post() racing with
  // this either lands in this batch or writes the fd again for the next.
  std::vector<std::shared_ptr<FutureState>> drain() {
    std::uint64_t buffer[16];
    while (true) {
      const ssize_t got = read(read_fd_, buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got < static_cast<ssize_t>(sizeof buffer) || read_fd_ == write_fd_) break;  // emptied
    }
    std::vector<std::shared_ptr<FutureState>> ready;
    std::lock_guard<std::mutex> lock(mutex_);
    ready.swap(ready_);
    return ready;
  }

 private:
  int read_fd_ = -1, write_fd_ = -1;
  std::mutex mutex_;
  std::vector<std::shared_ptr<FutureState>> ready_;
};

// Python references that may be let go of on a thread without the GIL (the engine's report
// thread drops a finished future's last reference if its submitter already has): released there
// only if that thread holds the GIL; otherwise handed to the interpreter's pending calls (run by
// the main thread under the GIL), and leaked while Python shuts down.
struct PyRefs {
  py::object userdata, awaiter, result;  // result: the Sample object, made once when first asked for
  std::vector<py::object> callbacks;

  bool empty() const { return !userdata && !awaiter && !result && callbacks.empty(); }
  static void release(PyRefs refs) {
    if (refs.empty()) return;
    if (PyGILState_Check()) return;  // refs' destructor decrefs here, under the GIL
    auto* owned = new PyRefs(std::move(refs));
    if (python_is_finalizing() ||
        Py_AddPendingCall([](void* p) { delete static_cast<PyRefs*>(p); return 0; }, owned) != 0) {
      owned->userdata.release();  // leaked: nobody may touch the interpreter now
      owned->awaiter.release();
      owned->result.release();
      for (py::object& o : owned->callbacks) o.release();
      delete owned;
    }
  }
};

// rf.Future: the result of one run.submit(). Completed by the engine's report thread without the
// GIL; result() waits with the GIL released; in asyncio, awaiting it registers its loop's Waker.
struct FutureState : std::enable_shared_from_this<FutureState> {
  std::mutex mutex;
  std::condition_variable completed;
  bool done = false;
  PullResult result;
  const std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<Waker> waker;  // set when awaited in an event loop
  PyRefs refs;                   // userdata, the awaiting loop's asyncio future, done-callbacks

  ~FutureState() { PyRefs::release(std::move(refs)); }

  // From the engine (report thread, or a thread evicting or stopping) or cancel(): no GIL unless
  // the user added done-callbacks, which are called as concurrent.futures calls them, on the
  // completing thread.
  void complete(PullResult& r) {
    std::shared_ptr<Waker> wake;
    std::vector<py::object> to_call;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (done) return;
      result = std::move(r);
      done = true;
      wake = std::move(waker);  // the Waker holds this future until drained: no cycle
      to_call.swap(refs.callbacks);
    }
    completed.notify_all();
    if (wake) wake->post(shared_from_this());
    if (!to_call.empty()) call_done_callbacks(std::move(to_call));
  }

  void call_done_callbacks(std::vector<py::object> to_call) {
    if (python_is_finalizing()) {
      PyRefs::release(PyRefs{py::object(), py::object(), py::object(), std::move(to_call)});
      return;
    }
    py::gil_scoped_acquire gil;
    py::object self = py::cast(shared_from_this());
    for (const py::object& fn : to_call) {
      try {
        fn(self);
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable("ringflow.Future done callback");  // as concurrent.futures logs them
      }
    }
    to_call.clear();  // under the GIL: the parameter itself is destroyed after `gil` lets go
  }

  // Waits with the GIL released; false on timeout (nullopt: forever; <= 0: no wait). On the main
  // thread in slices, so Ctrl-C is noticed.
  bool wait(std::optional<double> seconds) {
    using std::chrono::steady_clock;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (done || (seconds && *seconds <= 0)) return done;  // no GIL hand-off
    }
    const bool main_thread = PyGILState_Check() && py::module_::import("threading").attr("current_thread")().is(
                                                       py::module_::import("threading").attr("main_thread")());
    py::gil_scoped_release release;
    // A timeout beyond a year is forever (and keeps the time arithmetic in range).
    const bool forever = !seconds || *seconds > 3.2e7;
    const steady_clock::time_point deadline =
        forever ? steady_clock::time_point::max()
                : steady_clock::now() + std::chrono::duration_cast<steady_clock::duration>(
                                            std::chrono::duration<double>(*seconds));
    std::unique_lock<std::mutex> lock(mutex);
    while (!done) {
      const steady_clock::time_point now = steady_clock::now();
      if (now >= deadline) return false;
      if (!main_thread) {
        completed.wait_until(lock, deadline);
        continue;
      }
      const auto slice = std::chrono::milliseconds(50);
      completed.wait_until(lock, deadline - now < slice ? deadline : now + slice);
      if (!done) {
        lock.unlock();
        raise_pending_signals();
        lock.lock();
      }
    }
    return true;
  }
};

// run.submit() / run.try_submit(): the sample's Future, or (try_submit, no room) None. A sample
// the DropIncoming policy rejects gets a Future that failed with that reason.
py::object submit_future(Run& run, const py::object& inputs, const py::object& userdata, const std::string& stream_id,
                         std::int64_t frame_id, std::int64_t pts_ns, bool wait) {
  Sample sample = checked_sample(run, inputs, stream_id, frame_id, pts_ns);
  auto future = std::make_shared<FutureState>();
  if (!userdata.is_none()) future->refs.userdata = userdata;
  Completion done = [future](PullResult& r) { future->complete(r); };
  // Enqueueing takes a microsecond; only waiting for room is worth two GIL hand-offs.
  std::optional<bool> accepted = run.submit_if_room(sample, done, future->cancel);
  if (!accepted) {
    if (!wait) return py::none();
    accepted = waiting([&] { return run.submit(std::move(sample), std::move(done), future->cancel); });
  }
  if (!*accepted) {
    PullResult rejected{PullStatus::Error, Sample(), "rejected by the DropIncoming overflow policy: the input queue was full"};
    future->complete(rejected);
  }
  return py::cast(future);
}

// For ringflow._aio: a Future completed (Ok, with an empty Sample) by the Run's next wake-up of
// its pullers or pushers, through Run::notify_when_pullable / notify_when_pushable. The engine
// thread that wakes it only posts it to the loop's Waker.
template <typename Register>
py::object wake_future(Register&& register_wake) {
  auto future = std::make_shared<FutureState>();
  register_wake([future] {
    PullResult woke{PullStatus::Ok, Sample(), {}};
    future->complete(woke);
  });
  return py::cast(future);
}

// run.push_many(): every sample, checked before any is copied or pushed. A stacked array (or a
// dict of them) is split along its first axis; its rows share one copy of it.
std::vector<Sample> many_samples(const Run& run, const py::object& inputs, const std::string& stream_id,
                                 const py::object& frame_ids) {
  std::vector<Sample> samples;
  const bool stacked = py::isinstance<py::array>(inputs) || py::isinstance<py::dict>(inputs);
  if (!stacked) {
    // A sequence of samples, each as push() takes it.
    std::vector<PyInputs> each;
    for (py::handle item : inputs) {
      each.emplace_back(item, stream_id);
      run.check(each.back().shapes());
    }
    for (PyInputs& in : each) samples.push_back(in.take());
  } else {
    std::vector<std::pair<std::string, py::array>> columns;
    if (py::isinstance<py::dict>(inputs)) {
      for (auto [name, value] : inputs.cast<py::dict>()) {
        columns.emplace_back(py::str(name).cast<std::string>(), py::array::ensure(value, py::array::c_style));
      }
    } else {
      columns.emplace_back("", py::array::ensure(inputs, py::array::c_style));
    }
    py::ssize_t rows = -1;
    Sample row;  // the shapes of one row, for check()
    for (auto& [name, column] : columns) {
      if (!column) throw DTypeError("push_many: input '" + name + "' is not convertible to a numpy array");
      if (column.ndim() < 1) throw ShapeError("push_many: a stacked input needs a first axis of samples");
      if (rows >= 0 && column.shape(0) != rows) {
        throw ShapeError("push_many: the stacked inputs hold different numbers of samples (" + std::to_string(rows) +
                         " and " + std::to_string(column.shape(0)) + ")");
      }
      rows = column.shape(0);
      // A row is column[i], or column[i:i+1] where the model's input has the stacked array's rank:
      // (N, 64) for a [batch, 64] input is N samples of [1, 64].
      Shape shape(column.shape() + 1, column.shape() + column.ndim());
      const std::vector<TensorSpec>& specs = run.input_specs();
      const std::size_t c = row.tensors.size();
      const auto spec = name.empty() ? (c < specs.size() ? specs.begin() + static_cast<std::ptrdiff_t>(c) : specs.end())
                                     : std::find_if(specs.begin(), specs.end(),
                                                    [&](const TensorSpec& t) { return t.name == name; });
      if (spec != specs.end() && spec->shape.size() == shape.size() + 1) shape.insert(shape.begin(), 1);
      row.names.push_back(name);
      row.tensors.push_back(Tensor::borrow(from_numpy_dtype(column.dtype()), std::move(shape), nullptr));
    }
    run.check(row);
    std::vector<Tensor> copies;  // one copy per column, shared by its rows
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const Shape whole(columns[c].second.shape(), columns[c].second.shape() + columns[c].second.ndim());
      copies.push_back(Tensor::copy_from(row.tensors[c].dtype(), whole, columns[c].second.data()));
    }
    for (py::ssize_t i = 0; i < rows; ++i) {
      Sample s;
      s.names = row.names;
      for (std::size_t c = 0; c < columns.size(); ++c) {
        MutableMapping m = copies[c].map_write();
        const std::size_t bytes = row.tensors[c].size_bytes();
        s.tensors.push_back(Tensor::borrow(row.tensors[c].dtype(), row.tensors[c].shape(),
                                           static_cast<char*>(m.data) + static_cast<std::size_t>(i) * bytes,
                                           m.keepalive));
      }
      if (!stream_id.empty()) s.stream_id = stream_id;
      samples.push_back(std::move(s));
    }
  }
  if (!frame_ids.is_none()) {
    std::size_t i = 0;
    for (py::handle id : frame_ids) {
      if (i == samples.size()) throw py::value_error("push_many: more frame_ids than samples");
      samples[i++].frame_id = id.cast<std::int64_t>();
    }
    if (i != samples.size()) throw py::value_error("push_many: fewer frame_ids than samples");
  }
  return samples;
}

py::object concurrent_futures(const char* name) {
  return py::module_::import("concurrent.futures").attr(name);
}

std::optional<double> timeout_seconds(const py::object& timeout) {
  if (timeout.is_none()) return std::nullopt;
  return timeout.cast<double>();
}

[[noreturn]] void raise_object(const py::object& error) {
  PyErr_SetObject(py::type::of(error).ptr(), error.ptr());
  throw py::error_already_set();
}

// Destroying a Run or a queue joins threads and may wait for callbacks that need the GIL: never
// with the GIL held. While Python shuts down, no callback can run any more, so a queue does not
// wait for its requests then.
template <typename T>
struct ReleaseGilDelete {
  void operator()(T* object) const {
    const bool finalizing = python_is_finalizing();
    const auto destroy = [&] {
      if constexpr (std::is_same_v<T, AsyncInferQueue>) {
        if (finalizing) object->stop();
      }
      delete object;
    };
    if (PyGILState_Check()) {
      py::gil_scoped_release release;
      destroy();
    } else {
      destroy();
    }
  }
};

py::object new_exception(py::module_& m, const char* name, std::initializer_list<py::handle> bases,
                         const char* doc) {
  py::tuple base_tuple(bases.size());
  std::size_t i = 0;
  for (py::handle b : bases) base_tuple[i++] = py::reinterpret_borrow<py::object>(b);
  const std::string qualified = std::string("ringflow.") + name;
  py::object type = py::reinterpret_steal<py::object>(
      PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base_tuple.ptr(), nullptr));
  if (!type) throw py::error_already_set();
  m.attr(name) = type;
  return type;
}

}  // namespace

PYBIND11_MODULE(_ringflow, m) {
  m.doc() = "ringflow engine (C++). Import `ringflow`, not this module.";

  // ---- errors -------------------------------------------------------------------------------
  static py::object error = new_exception(m, "Error", {PyExc_RuntimeError}, "Base of every ringflow error.");
  static py::object shape_error =
      new_exception(m, "ShapeError", {error, PyExc_ValueError}, "An input has the wrong rank or shape.");
  static py::object dtype_error =
      new_exception(m, "DTypeError", {error, PyExc_TypeError}, "An input has the wrong dtype.");
  static py::object model_error = new_exception(m, "ModelError", {error},
                                                "A model file is missing, corrupt or unloadable.");
  static py::object closed_error =
      new_exception(m, "ClosedError", {error}, "push() or try_push() after close_input().");
  static py::object timeout_error =
      new_exception(m, "TimeoutError", {error, PyExc_TimeoutError}, "A call did not finish in time.");
  static py::object inference_error =
      new_exception(m, "InferenceError", {error}, "One sample failed in a pipeline stage.");
  static py::object cancelled_error = new_exception(
      m, "CancelledError", {error}, "The sample was dropped by Run.cancel() before it ran.");
  static py::object callback_error = new_exception(
      m, "CallbackError", {error}, "A user callback raised; the operation that called it completed.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ShapeError& e) {
      PyErr_SetString(shape_error.ptr(), e.what());
    } catch (const DTypeError& e) {
      PyErr_SetString(dtype_error.ptr(), e.what());
    } catch (const ModelError& e) {
      PyErr_SetString(model_error.ptr(), e.what());
    } catch (const ClosedError& e) {
      PyErr_SetString(closed_error.ptr(), e.what());
    } catch (const TimeoutError& e) {
      PyErr_SetString(timeout_error.ptr(), e.what());
    } catch (const InferenceError& e) {
      PyErr_SetString(inference_error.ptr(), e.what());
    } catch (const CancelledError& e) {
      PyErr_SetString(cancelled_error.ptr(), e.what());
    } catch (const CallbackError& e) {
      // The callbacks' own exceptions: the first becomes __cause__, all of them .errors.
      // KeyboardInterrupt and SystemExit are raised as themselves, with a CallbackError for the
      // others (if any) as their __context__, so none is lost.
      py::list causes;
      std::optional<py::error_already_set> interrupt;
      for (const std::exception_ptr& cause : e.causes()) {
        try {
          std::rethrow_exception(cause);
        } catch (PythonCallbackError& raised) {
          if (raised.error.matches(PyExc_KeyboardInterrupt) || raised.error.matches(PyExc_SystemExit)) {
            if (!interrupt) interrupt = raised.error;
            continue;
          }
          causes.append(raised.error.value());
        } catch (const std::exception& other) {
          causes.append(py::reinterpret_steal<py::object>(PyObject_CallFunction(PyExc_RuntimeError, "s", other.what())));
        } catch (...) {
        }
      }
      py::object error_object = callback_error(e.what());
      error_object.attr("accepted") = e.accepted();
      error_object.attr("errors") = causes;
      if (!causes.empty()) PyException_SetCause(error_object.ptr(), py::object(causes[0]).release().ptr());
      if (interrupt) {
        if (!causes.empty()) PyException_SetContext(interrupt->value().ptr(), error_object.release().ptr());
        interrupt->restore();
        return;
      }
      PyErr_SetObject(callback_error.ptr(), error_object.ptr());
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });

  set_report_round_end_hook(&end_round);

  m.def("set_onnxruntime_library", &set_onnxruntime_library, py::arg("path"));
  m.def("onnxruntime_version", &onnxruntime_version, py::call_guard<py::gil_scoped_release>());

  // ---- Tensor, Sample -----------------------------------------------------------------------
  py::class_<TensorSpec>(m, "TensorSpec")
      .def_readonly("name", &TensorSpec::name)
      .def_property_readonly("dtype", [](const TensorSpec& s) { return to_numpy_dtype(s.dtype); })
      .def_property_readonly("shape",
                             [](const TensorSpec& s) {
                               py::list dims;
                               for (std::int64_t d : s.shape) {
                                 dims.append(d < 0 ? py::object(py::none()) : py::object(py::int_(d)));
                               }
                               return py::tuple(dims);
                             })
      .def("__repr__", [](const TensorSpec& s) {
        return "TensorSpec(name='" + s.name + "', dtype=" + dtype_name(s.dtype) +
               ", shape=" + shape_to_string(s.shape) + ")";
      });

  py::class_<Tensor>(m, "Tensor", py::buffer_protocol())
      .def(py::init([](const py::handle& array) { return PyInputs(array).take().tensors[0]; }), py::arg("array"), "Copies a numpy array into a new Tensor.")
      .def_buffer([](Tensor& t) {
        const py::dtype dt = to_numpy_dtype(t.dtype());
        std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
        std::vector<py::ssize_t> strides(shape.size());
        py::ssize_t stride = dt.itemsize();
        for (std::size_t i = shape.size(); i-- > 0;) {
          strides[i] = stride;
          stride *= shape[i];
        }
        return py::buffer_info(t.map_write().data, dt.itemsize(), py::str(dt.attr("char")).cast<std::string>(),
                               static_cast<py::ssize_t>(shape.size()), shape, strides);
      })
      .def_property_readonly("dtype", [](const Tensor& t) { return to_numpy_dtype(t.dtype()); })
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def_property_readonly("size_bytes", &Tensor::size_bytes)
      .def("numpy", &array_from_tensor, "A zero-copy numpy view that keeps the buffer alive.")
      .def_property_readonly("data", &array_from_tensor, "The same view as numpy(), named as OpenVINO's Tensor.data.")
      .def("__array__",
           [](const Tensor& t, py::object dtype, py::object copy) {
             // numpy 2 semantics: copy=None copies only if needed, False never copies, True always.
             py::array a = array_from_tensor(t);
             const bool convert = !dtype.is_none() && !a.dtype().equal(py::dtype::from_args(dtype));
             if (convert && !copy.is_none() && !copy.cast<bool>()) {
               throw py::value_error("converting a " + std::string(dtype_name(t.dtype())) +
                                     " Tensor to another dtype needs a copy, but copy=False");
             }
             if (convert) return py::array(a.attr("astype")(dtype));
             if (!copy.is_none() && copy.cast<bool>()) return py::array(a.attr("copy")());
             return a;
           },
           py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def("__repr__", [](const Tensor& t) { return "Tensor(" + t.describe() + ")"; });

  py::class_<Sample>(m, "Sample")
      .def(py::init<>())
      .def_readwrite("names", &Sample::names)
      .def_readwrite("tensors", &Sample::tensors)
      .def_readwrite("stream_id", &Sample::stream_id)
      .def_readwrite("frame_id", &Sample::frame_id)
      .def_readwrite("pts_ns", &Sample::pts_ns)
      .def_readonly("input_seq", &Sample::input_seq)
      .def("__len__", [](const Sample& s) { return s.tensors.size(); })
      .def("__getitem__",
           [](const Sample& s, py::object key) {
             if (py::isinstance<py::str>(key)) {
               const auto name = key.cast<std::string>();
               const auto it = std::find(s.names.begin(), s.names.end(), name);
               if (it == s.names.end()) throw py::key_error("sample has no tensor named '" + name + "'");
               return array_from_tensor(s.tensors[static_cast<std::size_t>(it - s.names.begin())]);
             }
             auto i = key.cast<py::ssize_t>();
             const auto n = static_cast<py::ssize_t>(s.tensors.size());
             if (i < 0) i += n;
             if (i < 0 || i >= n) throw py::index_error("sample has " + std::to_string(n) + " tensors");
             return array_from_tensor(s.tensors[static_cast<std::size_t>(i)]);
           },
           "The tensor at an index or with a name, as a zero-copy numpy array.")
      .def("__repr__", [](const Sample& s) {
        std::string r = "Sample(input_seq=" + std::to_string(s.input_seq) +
                        ", frame_id=" + std::to_string(s.frame_id) + ", tensors=[";
        for (std::size_t i = 0; i < s.tensors.size(); ++i) {
          r += (i ? ", " : "") + (i < s.names.size() && !s.names[i].empty() ? s.names[i] + ": " : "") +
               s.tensors[i].describe();
        }
        return r + "])";
      });
  m.def("tensors_from_sample", &tensors_from_sample, py::arg("sample"),
        py::arg("require_nonempty") = false, py::return_value_policy::copy);

  // ---- options ------------------------------------------------------------------------------
  py::enum_<ColorFormat>(m, "ColorFormat")
      .value("RGB", ColorFormat::RGB)
      .value("BGR", ColorFormat::BGR)
      .value("GRAY", ColorFormat::GRAY);
  py::enum_<GraphOptimization>(m, "GraphOptimization")
      .value("Disabled", GraphOptimization::Disabled)
      .value("Basic", GraphOptimization::Basic)
      .value("Extended", GraphOptimization::Extended)
      .value("All", GraphOptimization::All);

  py::class_<PreprocessOptions::Normalize>(m, "NormalizeOptions")
      .def(py::init([](std::vector<float> mean, std::vector<float> stddev) {
             return PreprocessOptions::Normalize{std::move(mean), std::move(stddev)};
           }),
           py::arg("mean") = std::vector<float>(), py::arg("stddev") = std::vector<float>())
      .def_readwrite("mean", &PreprocessOptions::Normalize::mean)
      .def_readwrite("stddev", &PreprocessOptions::Normalize::stddev);

  py::class_<PreprocessOptions>(m, "PreprocessOptions")
      .def(py::init([](ColorFormat input_format, ColorFormat model_format, int w, int h, int d,
                       std::vector<float> mean, std::vector<float> stddev, bool resize, int threads) {
             PreprocessOptions o;
             o.input_format = input_format;
             o.model_format = model_format;
             o.input_max_width = w;
             o.input_max_height = h;
             o.input_max_depth = d;
             o.normalize.mean = std::move(mean);
             o.normalize.stddev = std::move(stddev);
             o.resize = resize;
             o.threads = threads;
             return o;
           }),
           py::arg("input_format") = ColorFormat::RGB, py::arg("model_format") = ColorFormat::RGB,
           py::arg("input_max_width") = 0, py::arg("input_max_height") = 0,
           py::arg("input_max_depth") = 0, py::arg("mean") = std::vector<float>(),
           py::arg("stddev") = std::vector<float>(), py::arg("resize") = true, py::arg("threads") = 1)
      .def_readwrite("input_format", &PreprocessOptions::input_format)
      .def_readwrite("model_format", &PreprocessOptions::model_format)
      .def_readwrite("input_max_width", &PreprocessOptions::input_max_width)
      .def_readwrite("input_max_height", &PreprocessOptions::input_max_height)
      .def_readwrite("input_max_depth", &PreprocessOptions::input_max_depth)
      .def_readwrite("normalize", &PreprocessOptions::normalize)
      .def_readwrite("resize", &PreprocessOptions::resize)
      .def_readwrite("threads", &PreprocessOptions::threads, "Threads of the Run's preprocess stage.")
      .def("enabled", &PreprocessOptions::enabled)
      .def_static("imagenet", &PreprocessOptions::imagenet, py::arg("max_width") = 224,
                  py::arg("max_height") = 224);

  py::class_<SessionOptions>(m, "SessionOptions")
      .def(py::init([](int intra, int inter, GraphOptimization opt, std::string provider,
                       const py::dict& provider_options, bool allow_spinning) {
             return SessionOptions{intra, inter, opt, std::move(provider), string_map(provider_options), allow_spinning};
           }),
           py::arg("intra_op_threads") = 0, py::arg("inter_op_threads") = 0,
           py::arg("optimization") = GraphOptimization::All, py::arg("execution_provider") = "cpu",
           py::arg("provider_options") = py::dict(), py::arg("allow_spinning") = false)
      .def_readwrite("allow_spinning", &SessionOptions::allow_spinning,
                     "Whether ORT's pool threads spin between parallel sections (ORT's default) instead of "
                     "sleeping (ringflow's, as its threads share the cores with yours).")
      .def_readwrite("intra_op_threads", &SessionOptions::intra_op_threads)
      .def_readwrite("inter_op_threads", &SessionOptions::inter_op_threads)
      .def_readwrite("optimization", &SessionOptions::optimization)
      .def_readwrite("execution_provider", &SessionOptions::execution_provider)
      .def_property("provider_options", [](const SessionOptions& o) { return o.provider_options; },
                    [](SessionOptions& o, const py::dict& d) { o.provider_options = string_map(d); });

  py::enum_<OverflowPolicy>(m, "OverflowPolicy")
      .value("Block", OverflowPolicy::Block)
      .value("KeepLatest", OverflowPolicy::KeepLatest)
      .value("DropIncoming", OverflowPolicy::DropIncoming);
  py::enum_<OutputMemory>(m, "OutputMemory")
      .value("Owned", OutputMemory::Owned)
      .value("Pooled", OutputMemory::Pooled);
  py::enum_<DropReason>(m, "DropReason")
      .value("QueueFull", DropReason::QueueFull)
      .value("Evicted", DropReason::Evicted);
  py::class_<DroppedInput>(m, "DroppedInput")
      .def_readonly("stream_id", &DroppedInput::stream_id)
      .def_readonly("frame_id", &DroppedInput::frame_id)
      .def_readonly("input_seq", &DroppedInput::input_seq)
      .def_readonly("reason", &DroppedInput::reason)
      .def("__repr__", [](const DroppedInput& d) {
        return "DroppedInput(stream_id='" + d.stream_id + "', frame_id=" + std::to_string(d.frame_id) +
               ", input_seq=" + std::to_string(d.input_seq) + ", reason=" + drop_reason_name(d.reason) + ")";
      });

  py::class_<RunOptions>(m, "RunOptions", R"doc(How a Run behaves under load (see run.hpp).

queue_depth: samples that may wait in the input queue; as many again (plus one batch per worker)
    may be computing or waiting to be pulled (Run.capacity).
overflow_policy: Block waits for room; KeepLatest drops the oldest waiting sample; DropIncoming
    rejects the new one. Every drop is counted and passed to on_input_drop(DroppedInput), which
    runs on the pushing thread; if it raises, push() completes and raises CallbackError.
workers: concurrent inference requests on one set of weights; ordered: keep push order.
max_batch, max_delay_us: dynamic batching for models with a dynamic batch dimension.
output_memory: Owned results own their buffers. Pooled results borrow pooled buffers, reused only
    after every Tensor, Sample and numpy array referring to one is gone; no allocation per sample.
enable_metrics: latency and per-stage timing in stats(); counters are always kept.
trace_samples: keep the stage spans of about this many recent samples for Run.trace(); 0: off.
max_shape: {input name: upper bounds per dimension} for the dimensions the model leaves dynamic;
    -1 or None leaves one unbounded. A push beyond a bound raises ShapeError.)doc")
      .def(py::init([](std::size_t queue_depth, OverflowPolicy policy, py::object on_input_drop, int workers,
                       bool ordered, int max_batch, int max_delay_us, OutputMemory output_memory,
                       bool enable_metrics, const py::dict& max_shape, std::size_t trace_samples) {
             RunOptions o;
             o.queue_depth = queue_depth;
             o.overflow_policy = policy;
             o.on_input_drop = drop_callback(on_input_drop);
             o.workers = workers;
             o.ordered = ordered;
             o.max_batch = max_batch;
             o.max_delay_us = max_delay_us;
             o.output_memory = output_memory;
             o.enable_metrics = enable_metrics;
             o.max_shape = shape_map(max_shape);
             o.trace_samples = trace_samples;
             return o;
           }),
           py::arg("queue_depth") = RunOptions().queue_depth,
           py::arg("overflow_policy") = OverflowPolicy::Block, py::arg("on_input_drop") = py::none(),
           py::arg("workers") = 1, py::arg("ordered") = true, py::arg("max_batch") = 1,
           py::arg("max_delay_us") = 0, py::arg("output_memory") = OutputMemory::Owned,
           py::arg("enable_metrics") = true, py::arg("max_shape") = py::dict(),
           py::arg("trace_samples") = RunOptions().trace_samples)
      .def_readwrite("queue_depth", &RunOptions::queue_depth)
      .def_readwrite("overflow_policy", &RunOptions::overflow_policy)
      .def_property("on_input_drop", [](const RunOptions& o) { return static_cast<bool>(o.on_input_drop); },
                    [](RunOptions& o, py::object f) { o.on_input_drop = drop_callback(f); })
      .def_readwrite("workers", &RunOptions::workers)
      .def_readwrite("ordered", &RunOptions::ordered)
      .def_readwrite("max_batch", &RunOptions::max_batch)
      .def_readwrite("max_delay_us", &RunOptions::max_delay_us)
      .def_readwrite("output_memory", &RunOptions::output_memory)
      .def_readwrite("enable_metrics", &RunOptions::enable_metrics)
      .def_readwrite("trace_samples", &RunOptions::trace_samples)
      .def_property("max_shape", [](const RunOptions& o) { return o.max_shape; },
                    [](RunOptions& o, const py::dict& d) { o.max_shape = shape_map(d); })
      .def_static("Realtime", &RunOptions::Realtime)
      .def_static("Balanced", &RunOptions::Balanced)
      .def_static("Reliable", &RunOptions::Reliable);

  // ---- stats --------------------------------------------------------------------------------
  py::class_<LatencySummary>(m, "LatencySummary")
      .def_readonly("count", &LatencySummary::count)
      .def_readonly("avg_ms", &LatencySummary::avg_ms)
      .def_readonly("min_ms", &LatencySummary::min_ms)
      .def_readonly("max_ms", &LatencySummary::max_ms)
      .def_readonly("p50_ms", &LatencySummary::p50_ms)
      .def_readonly("p90_ms", &LatencySummary::p90_ms)
      .def_readonly("p99_ms", &LatencySummary::p99_ms);
  py::class_<StageStats>(m, "StageStats")
      .def_readonly("name", &StageStats::name)
      .def_readonly("threads", &StageStats::threads)
      .def_readonly("samples", &StageStats::samples)
      .def_readonly("avg_wait_ms", &StageStats::avg_wait_ms)
      .def_readonly("avg_compute_ms", &StageStats::avg_compute_ms)
      .def_readonly("busy_ms", &StageStats::busy_ms)
      .def_readonly("occupancy", &StageStats::occupancy)
      .def("__repr__", [](const StageStats& s) {
        char text[256];
        std::snprintf(text, sizeof text,
                      "StageStats(name='%s', threads=%d, samples=%llu, avg_wait_ms=%.3f, avg_compute_ms=%.3f, "
                      "occupancy=%.2f)",
                      s.name.c_str(), s.threads, static_cast<unsigned long long>(s.samples), s.avg_wait_ms,
                      s.avg_compute_ms, s.occupancy);
        return std::string(text);
      });
  py::class_<InputStats>(m, "InputStats")
      .def_readonly("pushes", &InputStats::pushes)
      .def_readonly("push_failures", &InputStats::push_failures)
      .def_readonly("inputs_enqueued", &InputStats::inputs_enqueued)
      .def_readonly("inputs_dropped", &InputStats::inputs_dropped)
      .def_readonly("avg_push_us", &InputStats::avg_push_us)
      .def_readonly("avg_queue_fill", &InputStats::avg_queue_fill)
      .def_readonly("max_queue_fill", &InputStats::max_queue_fill);
  py::class_<RunStats>(m, "RunStats")
      .def_readonly("input", &RunStats::input)
      .def_readonly("outputs_ready", &RunStats::outputs_ready)
      .def_readonly("outputs_pulled", &RunStats::outputs_pulled)
      .def_readonly("errors", &RunStats::errors)
      .def_readonly("cancelled", &RunStats::cancelled)
      .def_readonly("batches", &RunStats::batches)
      .def_readonly("avg_batch_size", &RunStats::avg_batch_size)
      .def_readonly("latency", &RunStats::latency)
      .def_readonly("stages", &RunStats::stages)
      .def_readonly("elapsed_s", &RunStats::elapsed_s)
      .def_readonly("throughput_fps", &RunStats::throughput_fps)
      .def("to_text", &RunStats::to_text)
      .def("to_json", &RunStats::to_json)
      .def("__str__", &RunStats::to_text);

  py::class_<BenchmarkReport>(m, "BenchmarkReport")
      .def_readonly("samples", &BenchmarkReport::samples)
      .def_readonly("latency_ms", &BenchmarkReport::latency_ms)
      .def_readonly("latency_p90_ms", &BenchmarkReport::latency_p90_ms)
      .def_readonly("fps", &BenchmarkReport::fps)
      .def_readonly("best_workers", &BenchmarkReport::best_workers)
      .def_readonly("fps_by_workers", &BenchmarkReport::fps_by_workers)
      .def("to_text", &BenchmarkReport::to_text)
      .def("to_json", &BenchmarkReport::to_json)
      .def("__str__", &BenchmarkReport::to_text);

  // ---- Model --------------------------------------------------------------------------------
  py::class_<Model> model(m, "Model");
  py::class_<Model::Options>(model, "Options")
      .def(py::init([](PreprocessOptions preprocess, SessionOptions session) {
             return Model::Options{std::move(preprocess), std::move(session)};
           }),
           py::arg("preprocess") = PreprocessOptions(), py::arg("session") = SessionOptions())
      .def_readwrite("preprocess", &Model::Options::preprocess)
      .def_readwrite("session", &Model::Options::session);
  py::class_<Model::RouteOptions>(model, "RouteOptions")
      .def(py::init([](bool in, bool out) { return Model::RouteOptions{in, out}; }),
           py::arg("include_input") = true, py::arg("include_output") = true)
      .def_readwrite("include_input", &Model::RouteOptions::include_input)
      .def_readwrite("include_output", &Model::RouteOptions::include_output);
  py::class_<Model::Fragment>(model, "Fragment");

  model
      .def(py::init([](const py::object& path, Model::Options options) {
             const auto file = py::module_::import("os").attr("fsdecode")(path).cast<std::string>();
             py::gil_scoped_release release;
             return Model(file, std::move(options));
           }),
           py::arg("path"), py::arg("options") = Model::Options(), "Loads an ONNX file (str or os.PathLike).")
      .def("input_specs", &Model::input_specs)
      .def("output_specs", &Model::output_specs)
      .def_property_readonly("options", [](const Model& self) { return Model::Options(self.options()); },
                             "A copy of the options the Model was loaded with.")
      .def_property_readonly("path", &Model::path)
      .def("run",
           [](const Model& self, const py::object& inputs, int timeout_ms) {
             PyInputs in(inputs);
             self.check(in.shapes());
             // No copy: `inputs` keeps the arrays alive until this call returns, as ORT's own run.
             Sample sample = in.take(/*borrow=*/true);
             py::gil_scoped_release release;
             return self.run(sample, timeout_ms);
           },
           py::arg("inputs"), py::arg("timeout_ms") = -1)
      .def("check",
           [](const Model& self, const py::object& inputs) { self.check(PyInputs(inputs).shapes()); },
           py::arg("inputs"), "Raises what run() would raise for these inputs' shapes and dtypes, without running.")
      .def("benchmark", &Model::benchmark, py::arg("samples") = 64, py::call_guard<py::gil_scoped_release>())
      .def("synthetic_inputs", &Model::synthetic_inputs, py::arg("seed") = 0)
      .def("graph", py::overload_cast<Model::RouteOptions>(&Model::graph, py::const_),
           py::arg("route") = Model::RouteOptions());

  // ---- Graph, Run ---------------------------------------------------------------------------
  py::enum_<PullStatus>(m, "PullStatus")
      .value("Ok", PullStatus::Ok)
      .value("Timeout", PullStatus::Timeout)
      .value("Closed", PullStatus::Closed)
      .value("Error", PullStatus::Error)
      .value("Cancelled", PullStatus::Cancelled);
  py::class_<PullResult>(m, "PullResult")
      .def_readonly("status", &PullResult::status)
      .def_readonly("sample", &PullResult::sample)
      .def_readonly("error", &PullResult::error)
      .def("__repr__", [](const PullResult& r) {
        return std::string("PullResult(status=") + pull_status_name(r.status) +
               (r.error.empty() ? "" : ", error='" + r.error + "'") + ")";
      });

  py::class_<ReportThread>(m, "ReportThread",
                           "A report thread that several Runs' callbacks can share (AscendCL's subscribed thread).")
      .def(py::init<>());

  // ---- Stage, Graph -------------------------------------------------------------------------
  py::class_<Stage>(m, "Stage", R"doc(A step of your own in a Graph, on threads of its own.

fn(sample) gets an rf.Sample and returns its new tensors: a list of arrays, a dict of name to array,
a Sample, or None to leave them as they are. The metadata (frame_id, stream_id, input_seq) is
carried over. fn gets a copy of the sample: return new tensors rather than assigning to
sample.tensors. It runs on the stage's `threads` threads, holding the GIL only around the call; with
several threads, samples still go on in push order when the Run is ordered. If it raises, that
sample alone fails (pulled as an Error naming the stage) and the Run goes on. fn must not stop or
wait for its own Run. A Run is kept alive by its stages: if fn refers to the Run, stop it
explicitly (or use `with`).)doc")
      .def(py::init([](const py::object& fn, const std::string& name, int threads) {
             return python_stage(fn, name, threads);
           }),
           py::arg("fn"), py::kw_only(), py::arg("name") = "", py::arg("threads") = 1)
      .def_property_readonly("name", &Stage::name)
      .def_property_readonly("threads", &Stage::threads)
      .def("__call__",
           [](const Stage& self, const py::object& inputs) {
             Sample sample = PyInputs(inputs).take();
             py::gil_scoped_release release;
             self.function()(sample);
             return sample;
           },
           py::arg("inputs"), "Runs the stage's function on these inputs on the calling thread; returns the Sample.")
      .def("__repr__", [](const Stage& s) {
        return "Stage(name='" + s.name() + "', threads=" + std::to_string(s.threads()) + ")";
      });
  m.def("TopK",
        [](int k, bool softmax, std::string input, int threads) {
          return TopK(TopKOptions{k, softmax, std::move(input), threads});
        },
        py::arg("k") = 5, py::arg("softmax") = false, py::arg("input") = "", py::arg("threads") = 1,
        R"doc(A Stage for classifiers: replaces the [C] or [N, C] scores (input: by name; default the first
tensor) with "topk_indices" (int64 [N, k], best first, ties to the lower index) and "topk_scores"
(float32 [N, k]; softmax probabilities with softmax=True).)doc");
  m.def("DetectionOutput",
        [](float score_threshold, float iou_threshold, int top_k, std::string detections, std::string boxes,
           std::string scores, int background_label, int threads) {
          DetectionOutputOptions o;
          o.score_threshold = score_threshold;
          o.iou_threshold = iou_threshold;
          o.top_k = top_k;
          o.detections = std::move(detections);
          o.boxes = std::move(boxes);
          o.scores = std::move(scores);
          o.background_label = background_label;
          o.threads = threads;
          return DetectionOutput(o);
        },
        py::arg("score_threshold") = 0.5f, py::arg("iou_threshold") = 0.45f, py::arg("top_k") = 200,
        py::arg("detections") = "", py::arg("boxes") = "", py::arg("scores") = "", py::arg("background_label") = -1,
        py::arg("threads") = 1,
        R"doc(A Stage for detectors: per-class non-maximum suppression of SSD-style [1, 1, N, 7] rows
(detections) or of raw boxes [N, 4] with scores [N, C]. Replaces them with "detections": float32
[M, 7] rows [image_id, label, score, x_min, y_min, x_max, y_max], best first, M <= top_k; a
detection is kept if its score is above score_threshold and it overlaps no better one of its class
by more than iou_threshold.)doc");

  // ---- futures -----------------------------------------------------------------------------
  // The raised form of a finished future's outcome, as concurrent.futures raises it.
  const auto outcome_error = [](const FutureState& f) -> py::object {
    if (f.result.status == PullStatus::Cancelled) return concurrent_futures("CancelledError")(f.result.error);
    const Sample& s = *f.result.sample;
    return inference_error("sample input_seq=" + std::to_string(s.input_seq) + " frame_id=" +
                           std::to_string(s.frame_id) + " failed: " + f.result.error);
  };
  // The result Sample as one Python object, however often it is asked for (under the GIL; done).
  const auto result_object = [](FutureState& f) -> py::object {
    std::lock_guard<std::mutex> lock(f.mutex);
    if (!f.refs.result) f.refs.result = py::cast(std::move(*f.result.sample));
    return f.refs.result;
  };
  // Hands a done future's outcome to the asyncio future awaiting it, on the loop's thread.
  const auto settle = [=](FutureState& f, const py::object& awaiter) {
    if (awaiter.attr("done")().cast<bool>()) return;  // the awaiting task was cancelled meanwhile
    if (f.result.status == PullStatus::Ok) {
      awaiter.attr("set_result")(result_object(f));
    } else if (f.result.status == PullStatus::Cancelled) {
      awaiter.attr("cancel")();
    } else {
      awaiter.attr("set_exception")(outcome_error(f));
    }
  };
  const auto settled = [](FutureState& f, const py::object& timeout) {
    if (!f.wait(timeout_seconds(timeout))) {
      raise_object(concurrent_futures("TimeoutError")("the result did not arrive within the timeout"));
    }
  };
  py::class_<Waker, std::shared_ptr<Waker>>(m, "Waker", "The wake-up fd of one event loop (ringflow._aio uses it).")
      .def(py::init<bool>(), py::arg("pipe") = false)
      .def("fileno", &Waker::fileno)
      .def("settle",
           [=](Waker& w) {
             for (const std::shared_ptr<FutureState>& f : w.drain()) {
               py::object awaiter;
               {
                 std::lock_guard<std::mutex> lock(f->mutex);
                 awaiter = std::move(f->refs.awaiter);
               }
               if (awaiter) settle(*f, awaiter);
             }
           },
           "On the loop's thread, when the fd is readable: settles the asyncio futures awaiting the futures "
           "completed since the last call, and resets the fd.");

  py::class_<FutureState, std::shared_ptr<FutureState>>(m, "Future", R"doc(The result of one run.submit().

Compatible with concurrent.futures.Future (result, exception, done, cancelled, running, cancel,
add_done_callback) and awaitable in asyncio. It is completed by the engine without the GIL; in
asyncio, completions reach the loop through one wake-up fd per loop.)doc")
      .def("done", [](FutureState& f) { std::lock_guard<std::mutex> lock(f.mutex); return f.done; })
      .def("cancelled",
           [](FutureState& f) {
             std::lock_guard<std::mutex> lock(f.mutex);
             return f.done && f.result.status == PullStatus::Cancelled;
           })
      .def("running", [](FutureState&) { return false; },
           "False: a sample may be cancelled until its result is handed over.")
      .def("cancel",
           [](FutureState& f) {
             {
               std::lock_guard<std::mutex> lock(f.mutex);
               if (f.done) return f.result.status == PullStatus::Cancelled;
               f.cancel->store(true, std::memory_order_relaxed);  // the engine drops the sample
             }
             PullResult cancelled{PullStatus::Cancelled, std::nullopt, "cancelled by Future.cancel()"};
             f.complete(cancelled);  // done now; the engine's later result is ignored
             return true;
           },
           "Cancels at once: the future is done and cancelled, and the engine drops the sample where it is "
           "(or discards its result if it already ran). Other samples are not affected. False if it had "
           "already finished.")
      .def("result",
           [=](FutureState& f, const py::object& timeout) -> py::object {
             settled(f, timeout);
             if (f.result.status == PullStatus::Ok) return result_object(f);
             raise_object(outcome_error(f));
           },
           py::arg("timeout") = py::none(),
           "The result Sample, waiting up to timeout seconds (None: forever; TimeoutError after). Raises "
           "InferenceError if the sample failed, concurrent.futures.CancelledError if it was cancelled.")
      .def("exception",
           [=](FutureState& f, const py::object& timeout) -> py::object {
             settled(f, timeout);
             if (f.result.status == PullStatus::Ok) return py::none();
             py::object error = outcome_error(f);
             if (f.result.status == PullStatus::Cancelled) raise_object(error);
             return error;
           },
           py::arg("timeout") = py::none())
      .def("add_done_callback",
           [](FutureState& f, const py::object& fn) {
             {
               std::lock_guard<std::mutex> lock(f.mutex);
               if (!f.done) {
                 f.refs.callbacks.push_back(fn);
                 return;
               }
             }
             try {
               fn(py::cast(f.shared_from_this()));
             } catch (py::error_already_set& e) {
               e.discard_as_unraisable("ringflow.Future done callback");  // as concurrent.futures logs them
             }
           },
           py::arg("fn"), "Calls fn(future) once it is done: at once if it is, else on the thread that completes it.")
      .def_property_readonly("userdata", [](FutureState& f) {
        std::lock_guard<std::mutex> lock(f.mutex);
        return f.refs.userdata ? f.refs.userdata : py::none();
      })
      .def("_watch",
           [](FutureState& f, const std::shared_ptr<Waker>& waker, const py::object& awaiter) {
             std::lock_guard<std::mutex> lock(f.mutex);
             if (f.refs.awaiter) throw Error("this rf.Future is already awaited, in another event loop or task");
             f.refs.awaiter = awaiter;
             if (f.done) return false;
             f.waker = waker;
             return true;
           },
           "For ringflow._aio: post this future to `waker` when done; False if it is done already.")
      .def_property_readonly("_awaiter",
                             [](FutureState& f) {
                               std::lock_guard<std::mutex> lock(f.mutex);
                               return f.refs.awaiter ? f.refs.awaiter : py::none();
                             })
      .def("_settle",
           [=](FutureState& f) {
             py::object awaiter;
             {
               std::lock_guard<std::mutex> lock(f.mutex);
               awaiter = std::move(f.refs.awaiter);
             }
             if (awaiter) settle(f, awaiter);
           },
           "For ringflow._aio: settles the asyncio future awaiting this done one (Waker.settle, one at a time).")
      .def("__await__", [](const py::object& self) {
        PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> await_future;
        return await_future
            .call_once_and_store_result([] { return py::module_::import("ringflow._aio").attr("await_future"); })
            .get_stored()(self);
      })
      .def("__repr__", [](FutureState& f) {
        std::lock_guard<std::mutex> lock(f.mutex);
        return std::string("Future(") + (f.done ? pull_status_name(f.result.status) : "pending") + ")";
      });

  py::class_<Graph>(m, "Graph")
      .def(py::init<>())
      .def("add", py::overload_cast<Model::Fragment>(&Graph::add), py::arg("fragment"),
           py::return_value_policy::reference_internal)
      .def("add", py::overload_cast<Stage>(&Graph::add), py::arg("stage"), py::return_value_policy::reference_internal)
      .def("add",
           [](Graph& self, const py::function& fn) -> Graph& {
             // Easy slips that would otherwise fail every sample: a factory or method not called.
             const py::module_ rf = py::module_::import("ringflow._ringflow");
             for (const char* factory : {"TopK", "DetectionOutput", "Stage"}) {
               if (fn.is(rf.attr(factory))) {
                 throw py::type_error(std::string("Graph.add got rf.") + factory + " itself; call it: rf." + factory +
                                      "(...)");
               }
             }
             const py::object self_of = py::getattr(fn, "__self__", py::none());
             if (py::isinstance<Model>(self_of)) {
               throw py::type_error("Graph.add got a method of a Model; add its fragment: graph.add(model.graph())");
             }
             return self.add(python_stage(fn, "", 1));
           },
           py::arg("fn"), py::return_value_policy::reference_internal,
           "Adds a step: a model fragment (model.graph()), a Stage, or a callable (as Stage(fn)).")
      .def("add",
           [](Graph&, const Model&) -> Graph& {
             throw py::type_error("Graph.add takes a model's fragment: graph.add(model.graph())");
           },
           py::arg("model"))
      .def("build",
           [](const Graph& self, const py::object& seed, const RunOptions& options) {
             // None: no seed, for a Graph with stages before the model (which does not use one).
             std::optional<PyInputs> in;  // holds the arrays the seed borrows until build() returns
             Sample sample;
             if (!seed.is_none()) {
               in.emplace(seed);
               sample = in->take(/*borrow=*/true);
             }
             auto run = std::unique_ptr<Run, ReleaseGilDelete<Run>>();
             {
               py::gil_scoped_release release;
               run.reset(new Run(self.build(sample, options)));
             }
             return run;
           },
           py::arg("seed_inputs") = py::none(), py::arg("options") = RunOptions(),
           "Starts a Run. seed_inputs: one representative input, checked and run once so a model that cannot "
           "run fails here; None (or anything) when stages come before the model, which is then warmed up on "
           "synthetic inputs.");

  py::class_<Run, std::unique_ptr<Run, ReleaseGilDelete<Run>>>(m, "Run")
      .def("push",
           [](Run& self, const py::object& inputs, const std::string& stream_id, std::int64_t frame_id,
              std::int64_t pts_ns) {
             Sample sample = checked_sample(self, inputs, stream_id, frame_id, pts_ns);
             // Enqueueing takes a microsecond; only waiting for room is worth two GIL hand-offs.
             if (std::optional<bool> accepted = self.push_if_room(sample)) return *accepted;
             return waiting([&] { return self.push(std::move(sample)); });
           },
           py::arg("inputs"), py::kw_only(), py::arg("stream_id") = "", py::arg("frame_id") = -1,
           py::arg("pts_ns") = -1)
      .def("submit",
           [](Run& self, const py::object& inputs, const py::object& userdata, const std::string& stream_id,
              std::int64_t frame_id, std::int64_t pts_ns) {
             return submit_future(self, inputs, userdata, stream_id, frame_id, pts_ns, /*wait=*/true);
           },
           py::arg("inputs"), py::arg("userdata") = py::none(), py::kw_only(), py::arg("stream_id") = "",
           py::arg("frame_id") = -1, py::arg("pts_ns") = -1,
           R"doc(Pushes one sample and returns an rf.Future of its result at once (waiting only while the
queue is full, as push() does: from a coroutine, use `await run.infer(x)`, which never blocks the
loop). Many threads and coroutines may submit into one Run; with max_batch > 1 their samples are
batched together. A Run used this way delivers only to its futures: push() and pull() refuse on it.)doc")
      .def("try_submit",
           [](Run& self, const py::object& inputs, const py::object& userdata, const std::string& stream_id,
              std::int64_t frame_id, std::int64_t pts_ns) {
             return submit_future(self, inputs, userdata, stream_id, frame_id, pts_ns, /*wait=*/false);
           },
           py::arg("inputs"), py::arg("userdata") = py::none(), py::kw_only(), py::arg("stream_id") = "",
           py::arg("frame_id") = -1, py::arg("pts_ns") = -1,
           "As submit(), but never waits: None when the input queue is full.")
      .def("try_push",
           [](Run& self, const py::object& inputs, const std::string& stream_id, std::int64_t frame_id,
              std::int64_t pts_ns) {
             // Never waits for room, so the GIL is kept: releasing it would cost more than the push.
             return self.try_push(checked_sample(self, inputs, stream_id, frame_id, pts_ns));
           },
           py::arg("inputs"), py::kw_only(), py::arg("stream_id") = "", py::arg("frame_id") = -1,
           py::arg("pts_ns") = -1)
      .def("push_many",
           [](Run& self, const py::object& inputs, const std::string& stream_id, const py::object& frame_ids) {
             std::vector<Sample> samples = many_samples(self, inputs, stream_id, frame_ids);
             std::size_t accepted = 0, done = 0;
             // Those that fit go in without giving up the GIL; the rest with one release.
             for (; done < samples.size(); ++done) {
               const std::optional<bool> in = self.push_if_room(samples[done]);
               if (!in) break;
               accepted += *in;
             }
             if (done == samples.size()) return accepted;
             try {
               waiting([&] {
                 for (; done < samples.size(); ++done) accepted += self.push(std::move(samples[done]));
               });
             } catch (const ClosedError& e) {
               throw ClosedError(std::string(e.what()) + " (push_many: " + std::to_string(done) + " of " +
                                 std::to_string(samples.size()) + " samples were pushed before it, " +
                                 std::to_string(accepted) + " of them accepted)");
             }
             return accepted;
           },
           py::arg("inputs"), py::kw_only(), py::arg("stream_id") = "", py::arg("frame_ids") = py::none(),
           R"doc(Pushes many samples with one release of the GIL; returns how many were accepted.

inputs: a list of samples, each as push() takes it; or a stacked array (or a dict of name to stacked
array) whose first axis indexes the samples: for an input of the stacked array's rank, each sample
is x[i:i+1] (a batch of one), otherwise x[i]. Every sample is checked before any is pushed, so a bad
one pushes none. Waits for room as push() does. frame_ids: one per sample (default: none set).)doc")
      .def("_push_if_room",
           [](Run& self, const py::object& inputs, const std::string& stream_id, std::int64_t frame_id,
              std::int64_t pts_ns) {
             Sample sample = checked_sample(self, inputs, stream_id, frame_id, pts_ns);
             return self.push_if_room(sample);
           },
           py::arg("inputs"), py::kw_only(), py::arg("stream_id") = "", py::arg("frame_id") = -1,
           py::arg("pts_ns") = -1, "For ringflow._aio: push() without waiting; None when it would wait for room.")
      .def("_when_pullable",
           [](Run& self) { return wake_future([&](auto wake) { self.notify_when_pullable(std::move(wake)); }); },
           "For ringflow._aio: a Future done at the Run's next wake-up of its pullers.")
      .def("_when_pushable",
           [](Run& self) { return wake_future([&](auto wake) { self.notify_when_pushable(std::move(wake)); }); },
           "For ringflow._aio: a Future done at the Run's next wake-up of its pushers.")
      .def("_pull_nowait",
           [](Run& self) -> py::object {
             PullResult r = self.pull_with_status(0);
             if (r.status == PullStatus::Timeout) return py::none();
             if (r.status == PullStatus::Closed) {
               PyErr_SetNone(PyExc_StopAsyncIteration);
               throw py::error_already_set();
             }
             return py::cast(*r.take_sample());
           },
           "For ringflow._aio: the next result if there is one, else None; StopAsyncIteration at end of stream.")
      .def("check",
           [](const Run& self, const py::object& inputs) { self.check(PyInputs(inputs).shapes()); },
           py::arg("inputs"), "Raises what push() would raise for these inputs' shapes and dtypes, without pushing.")
      .def("close_input", &Run::close_input, py::call_guard<py::gil_scoped_release>())
      .def("set_callback",
           [](Run& self, const py::object& callback, int every, int max_delay_ms, const ReportThread* thread) {
             ResultCallback fn = result_callback(callback);
             py::gil_scoped_release release;
             self.set_callback(std::move(fn), every, max_delay_ms, thread);
           },
           py::arg("callback"), py::arg("every") = 1, py::arg("max_delay_ms") = -1,
           py::arg("report_thread") = nullptr,
           R"doc(From now on, results go to callback(results) instead of pull(); call before the first push.

callback gets a list of up to `every` PullResult (Ok with .sample, or Error with .error and the
failed sample's metadata), in push order when the Run is ordered. It runs on a report thread, never
on an inference thread; the report thread holds the GIL only while it delivers a round of ready
groups, and never while it waits. With max_delay_ms >= 0, a partial group
goes once its oldest result has waited that long; wait_all() and end of stream deliver the last one.
report_thread: an rf.ReportThread shared with other Runs; by default the Run has its own.
If the callback raises, the next push, try_push, wait_all or set_callback raises CallbackError (its
__cause__ the first exception, .errors all of them), once; KeyboardInterrupt and SystemExit are
raised as themselves. Pooled result buffers go back to the pool when the callback returns, unless
it kept an array of them.)doc")
      .def("wait_all",
           [](Run& self, int timeout_ms) { return waiting([&] { return self.wait_all(timeout_ms); }); },
           py::arg("timeout_ms") = -1,
           "Waits until every accepted sample has been delivered (callback returned, or pulled); False on timeout.")
      .def("stop_and_wait",
           [](Run& self, int timeout_ms) { return waiting([&] { return self.stop_and_wait(timeout_ms); }); },
           py::arg("timeout_ms") = -1,
           "Closes the input and waits until every accepted sample has passed every stage (OpenVINO's "
           "StopAndWait); False on timeout. Results beyond capacity wait for a puller.")
      .def("cancel", &Run::cancel, py::call_guard<py::gil_scoped_release>(),
           "Closes the input and drops every accepted sample that has not run yet; each is delivered with "
           "status Cancelled (pull() raises CancelledError for it). Samples already running finish.")
      .def("trace", &Run::trace, py::arg("path"), py::call_guard<py::gil_scoped_release>(),
           "Writes the recent samples' stage spans as Chrome trace JSON (open it in Perfetto).")
      .def("stop", &Run::stop, py::call_guard<py::gil_scoped_release>(),
           "Stops intake, cancels queued work, wakes waiting push/pull calls and joins the engine's threads.")
      // A result that is already there is taken without giving up the GIL; only waiting releases it.
      .def("pull",
           [](Run& self, int timeout_ms) {
             std::optional<Sample> ready = self.pull(0);  // a poll; throws for a failed sample
             if (ready || timeout_ms == 0) return ready;
             return waiting([&] { return self.pull(timeout_ms); });
           },
           py::arg("timeout_ms") = -1)
      .def("pull_many",
           [](Run& self, std::size_t max_count, int timeout_ms) {
             // Waits (GIL released) for the first result only; then takes what is ready, up to
             // max_count, stopping after a failed one so that pull_many never pulls past an error.
             std::vector<PullResult> taken;
             const auto take = [&](int first_timeout_ms) {
               while (taken.size() < max_count) {
                 PullResult r = self.pull_with_status(taken.empty() ? first_timeout_ms : 0);
                 if (r.status == PullStatus::Timeout || r.status == PullStatus::Closed) return;
                 taken.push_back(std::move(r));
                 if (taken.back().status != PullStatus::Ok) return;
               }
             };
             take(0);
             if (taken.empty() && timeout_ms != 0 && max_count > 0) waiting([&] { take(timeout_ms); });
             py::list samples;
             for (PullResult& r : taken) {
               if (r.status == PullStatus::Ok) {
                 samples.append(py::cast(std::move(*r.sample)));
                 continue;
               }
               // The samples pulled before it travel on the error, so none is lost.
               const auto raise = [&](const py::object& type, const char* what) {
                 py::object error_object = type(what);
                 error_object.attr("results") = samples;
                 raise_object(error_object);
               };
               try {
                 r.take_sample();
               } catch (const InferenceError& e) {
                 raise(inference_error, e.what());
               } catch (const CancelledError& e) {
                 raise(cancelled_error, e.what());
               }
             }
             return samples;
           },
           py::arg("max_count"), py::arg("timeout_ms") = -1,
           R"doc(Up to max_count results with one release of the GIL: waits up to timeout_ms (-1: forever)
for the first, then takes those already there. An empty list on timeout or at end of stream. For a
failed sample it raises InferenceError (CancelledError for one cancel() dropped) after the samples
pulled before it, which are the error's .results: nothing pulled is lost.)doc")
      .def("pull_with_status",
           [](Run& self, int timeout_ms) {
             PullResult ready = self.pull_with_status(0);
             if (ready.status != PullStatus::Timeout || timeout_ms == 0) return ready;
             return waiting([&] { return self.pull_with_status(timeout_ms); });
           },
           py::arg("timeout_ms") = -1)
      .def("run",
           [](Run& self, const py::object& inputs, int timeout_ms) {
             Sample sample = checked_sample(self, inputs, "", -1, -1);
             return waiting([&] { return self.run(std::move(sample), timeout_ms); });
           },
           py::arg("inputs"), py::arg("timeout_ms") = -1)
      .def("__enter__", [](Run& self) -> Run& { return self; }, py::return_value_policy::reference)
      .def("__exit__",
           [](Run& self, const py::args&) {
             py::gil_scoped_release release;
             self.close_input();
             self.stop();
             return false;
           },
           "Closes the input and stops the Run (joining its threads); results not pulled by then are discarded.")
      .def("__iter__", [](Run& self) -> Run& { return self; }, py::return_value_policy::reference)
      .def("__next__",
           [](Run& self) {
             std::optional<Sample> next = self.pull(0);
             if (!next) next = waiting([&] { return self.pull(-1); });
             if (!next) throw py::stop_iteration();  // end of stream
             return std::move(*next);
           },
           "The next result; StopIteration at end of stream, InferenceError for a failed sample, "
           "CancelledError for one cancel() dropped.")
      .def("input_specs", &Run::input_specs)
      .def("output_specs", &Run::output_specs)
      .def_property_readonly("options", [](const Run& self) { return RunOptions(self.options()); },
                             "A copy of the options the Run was built with.")
      .def_property_readonly("capacity", &Run::capacity)
      .def("stats", &Run::stats)
      .def("input_stats", &Run::input_stats);

  // ---- AsyncInferQueue ------------------------------------------------------------------------
  py::class_<InferRequest>(m, "InferRequest",
                           "One job of an AsyncInferQueue. Its outputs stay readable until the job starts again.")
      .def("get_output_tensor", &InferRequest::get_output_tensor, py::arg("index") = 0,
           py::return_value_policy::copy, "Output `index` as a Tensor (.data: a zero-copy numpy view).")
      .def("get_tensor", &InferRequest::get_tensor, py::arg("name"), py::return_value_policy::copy,
           "The output of that name as a Tensor.")
      .def_property_readonly("results",
                             [](const InferRequest& r) {
                               py::dict out;
                               const Sample& s = r.results();
                               for (std::size_t i = 0; i < s.tensors.size(); ++i) {
                                 out[py::str(s.names[i])] = array_from_tensor(s.tensors[i]);
                               }
                               return out;
                             },
                             "Output name -> numpy array (zero-copy).")
      .def_property_readonly("latency", &InferRequest::latency_ms, "start_async() to callback, in milliseconds.")
      .def_property_readonly("error",
                             [](const InferRequest& r) -> py::object {
                               if (r.error().empty()) return py::none();
                               return py::str(r.error());
                             },
                             "None, or why this inference failed (then it has no outputs).")
      .def_property_readonly("request_id", &InferRequest::id);

  py::class_<AsyncInferQueue, std::unique_ptr<AsyncInferQueue, ReleaseGilDelete<AsyncInferQueue>>>(m, "AsyncInferQueue", R"doc(OpenVINO's AsyncInferQueue, on a ringflow Run.

AsyncInferQueue(model, jobs=0, ordered=False): `jobs` requests in flight at most. jobs=0 picks eight
per core: one inference per core at a time (each with one ONNX Runtime thread, the fastest split
measured on CPUs), the others waiting ready, so no core idles and the results that finish while a
callback waits for the GIL come back together in one hand-off. ordered=True delivers callbacks in
submission order (OpenVINO: completion order).

set_callback(cb) is called as cb(request, userdata) on a report thread, which holds the GIL only
while it delivers a round of finished requests. start_async(inputs, userdata=None) copies the inputs (reuse them at once) and waits, with
the GIL released, only while every job is busy. A failed inference reaches the callback as
request.error. If a callback raises, the next start_async() or wait_all() raises CallbackError
(once; the queue goes on).)doc")
      .def(py::init([](const Model& model, int jobs, bool ordered) {
             py::gil_scoped_release release;
             return std::unique_ptr<AsyncInferQueue, ReleaseGilDelete<AsyncInferQueue>>(
                 new AsyncInferQueue(model, jobs, ordered));
           }),
           py::arg("model"), py::arg("jobs") = 0, py::arg("ordered") = false)
      .def("set_callback",
           [](AsyncInferQueue& self, const py::object& callback) {
             if (!PyCallable_Check(callback.ptr())) throw py::type_error("set_callback needs a callable");
             std::shared_ptr<py::object> fn = hold(callback);
             self.set_callback([fn](InferRequest& request, std::any& userdata) {
               hold_gil_for_round();  // on the queue's report thread
               call_python(*fn, py::cast(&request, py::return_value_policy::reference), from_any(userdata));
             });
           },
           py::arg("callback"))
      .def("start_async",
           [](AsyncInferQueue& self, const py::object& inputs, const py::object& userdata) {
             const py::object named = inputs_by_name(inputs, self.input_names());
             PyInputs in(named);
             self.check(in.shapes());
             Sample sample = in.take();
             std::any data = hold(userdata);
             // With a job idle, starting takes a microsecond: only waiting is worth giving up the GIL.
             if (self.try_start_async(sample, data)) return;
             waiting([&] { self.start_async(std::move(sample), std::move(data)); });
           },
           py::arg("inputs"), py::arg("userdata") = py::none(),
           "inputs: a dict by input name or index, a list in model order, or one array.")
      .def("wait_all", [](AsyncInferQueue& self, int timeout_ms) { return waiting([&] { return self.wait_all(timeout_ms); }); },
           py::arg("timeout_ms") = -1, "Waits until every started request's callback has returned.")
      .def("is_ready", &AsyncInferQueue::is_ready, "True when a job is idle, so start_async() would not wait.")
      .def("stop", &AsyncInferQueue::stop, py::call_guard<py::gil_scoped_release>(),
           "Discards the requests in flight (their callbacks are not called) and stops the queue.")
      .def("get_idle_request_id",
           [](AsyncInferQueue& self) { return waiting([&] { return self.get_idle_request_id(); }); },
           "The id of the job the next start_async() will take (it stays idle), waiting while every job is busy.")
      .def("__len__", &AsyncInferQueue::size)
      .def("__getitem__",
           [](AsyncInferQueue& self, std::size_t id) -> InferRequest& {
             if (id >= self.size()) throw py::index_error("the queue has " + std::to_string(self.size()) + " jobs");
             return self[id];
           },
           py::return_value_policy::reference_internal)
      .def_property_readonly("userdata",
                             [](const AsyncInferQueue& self) {
                               py::list out;
                               for (std::size_t id = 0; id < self.size(); ++id) out.append(from_any(self.userdata(id)));
                               return out;
                             },
                             "Per job, the userdata of its last start_async().");
}
