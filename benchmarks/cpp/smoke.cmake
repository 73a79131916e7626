# bench.smoke: both benchmark programs run to completion on a tiny workload.
# Usage: cmake -DQUEUE_BENCH=<path> -DRINGFLOW_BENCH=<path> -P smoke.cmake

function(run_ok)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    string(REPLACE ";" " " command "${ARGN}")
    message(FATAL_ERROR "${command}\nexited with ${status}\nstdout:\n${out}\nstderr:\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run_ok("${QUEUE_BENCH}" --quick)
run_ok("${RINGFLOW_BENCH}" --model tiny-mlp --samples 200 --warmup 10)
