// ReportThread: the thread that runs result callbacks (Run::set_callback), AscendCL's report thread.
//
// Every Run given a callback subscribes to one: its own by default, or one shared with other Runs,
// as AscendCL subscribes one thread to several streams. Callbacks never run on an inference thread,
// so a slow callback stalls no compute; it only lets its Run's result slots fill, and then the
// overflow policy applies at push() as usual.
#pragma once

#include <memory>

namespace ringflow {

class ReportThreadImpl;

// For language bindings: `hook` is called on every report thread after each round of callbacks
// (every Run served, every ready group delivered), before the thread waits for more. The Python
// bindings take the GIL once for a round's callbacks and let go of it here, so a burst of groups
// costs one GIL hand-off rather than one per group. Set it before any Run has a callback.
void set_report_round_end_hook(void (*hook)());

class ReportThread {
 public:
  // Starts the thread. It runs until the last Run subscribed to it, and this handle, are gone.
  ReportThread();
  ~ReportThread();
  ReportThread(const ReportThread&) = default;  // handles share the one thread
  ReportThread& operator=(const ReportThread&) = default;

 private:
  friend class Run;
  std::shared_ptr<ReportThreadImpl> impl_;
};

}  // namespace ringflow
