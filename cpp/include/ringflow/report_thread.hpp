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
