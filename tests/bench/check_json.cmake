# kin_bench_smoke: runs `kin-bench --quick --json` and checks that it exits 0
# and prints one JSON object holding every figure the bench promises, each a
# number. Timings are not judged. Usage: cmake -DBENCH=path -P check_json.cmake
cmake_minimum_required(VERSION 3.19) # string(JSON)

execute_process(COMMAND ${BENCH} --quick --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 120)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "kin-bench exited with ${rc}\n${err}\n${out}")
endif()
set(keys zmq_rtt_us zmq_rtt_p99_us call_rtt_us call_rtt_p99_us call2_rtt_us
         calls_per_s zmq_msgs_per_s spawn_first_call_ms idle_rss_kib
         spawn100_ms)
foreach(key ${keys})
    string(JSON type ERROR_VARIABLE jerr TYPE "${out}" ${key})
    if(jerr OR NOT type STREQUAL "NUMBER")
        message(FATAL_ERROR "kin-bench --json: ${key} is not a number "
                            "(${type}${jerr})\n${out}")
    endif()
endforeach()
message(STATUS "kin-bench --quick --json: every key present")
