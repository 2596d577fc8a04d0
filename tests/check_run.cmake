# Runs a command and checks what it did; the smoke checks of the benchmarks
# and the examples use it so that a program that failed never shows as passed
# (CTest's PASS_REGULAR_EXPRESSION alone ignores the exit status).
#
#   cmake -P check_run.cmake CHECK... -- CMD [ARG...]
#
# The command must exit 0. Exit 77 means "skipped": the script prints
# "check_run: skipped" and the test sets SKIP_REGULAR_EXPRESSION to it
# (cmake -P cannot exit 77 itself). Each CHECK is one of
#   KEY          the JSON object the command printed (its last stdout line
#                starting with "{") has KEY, a number
#   KEY>0        ... a number greater than 0
#   KEY=VALUE    ... equal to VALUE (a number, true or false)
#   ~REGEX       stdout followed by stderr matches REGEX
# Figures are never judged beyond "present and sane" (benchmarks report,
# they do not fail).
cmake_minimum_required(VERSION 3.19) # string(JSON)

set(checks)
set(cmd)
set(in_cmd FALSE)
set(after_script FALSE)
set(script_next FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
    string(REPLACE ";" "\\;" arg "${CMAKE_ARGV${i}}") # one list element
    if(in_cmd)
        list(APPEND cmd "${arg}")
    elseif(arg STREQUAL "--")
        set(in_cmd TRUE)
    elseif(after_script)
        list(APPEND checks "${arg}")
    elseif(script_next) # the script's own path
        set(after_script TRUE)
    elseif(arg STREQUAL "-P")
        set(script_next TRUE)
    endif()
endforeach()
if(NOT cmd)
    message(FATAL_ERROR "usage: cmake -P check_run.cmake CHECK... -- CMD...")
endif()

execute_process(COMMAND ${cmd} RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err
                ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE)
if(rc STREQUAL "77")
    message("check_run: skipped (the command exited 77)")
    return()
endif()
if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "check_run: the command exited with ${rc}")
endif()

# The last line of stdout that starts with "{" is the JSON object.
set(json "")
string(REGEX MATCHALL "(^|\n)\\{[^\n]*" objs "${out}")
if(objs)
    list(GET objs -1 json)
    string(STRIP "${json}" json)
endif()

set(bad "")
foreach(c IN LISTS checks)
    if(c MATCHES "^~(.*)$")
        set(re "${CMAKE_MATCH_1}")
        if(NOT "${out}${err}" MATCHES "${re}")
            string(APPEND bad "  output does not match: ${re}\n")
        endif()
        continue()
    endif()
    if(NOT c MATCHES "^([A-Za-z0-9_]+)(>0|=(.*))?$")
        message(FATAL_ERROR "check_run: bad check '${c}'")
    endif()
    set(key "${CMAKE_MATCH_1}")
    set(op "${CMAKE_MATCH_2}")
    set(want "${CMAKE_MATCH_3}")
    if(json STREQUAL "")
        string(APPEND bad "  no JSON object on stdout (wanted ${key})\n")
        continue()
    endif()
    string(JSON type ERROR_VARIABLE jerr TYPE "${json}" ${key})
    if(jerr)
        string(APPEND bad "  ${key}: missing\n")
        continue()
    endif()
    string(JSON value GET "${json}" ${key})
    if(want STREQUAL "true" OR want STREQUAL "false")
        if(want STREQUAL "true")
            set(want_bool ON)
        else()
            set(want_bool OFF)
        endif()
        if(NOT type STREQUAL "BOOLEAN" OR NOT value STREQUAL want_bool)
            string(APPEND bad "  ${key}: ${value} (${type}), want ${want}\n")
        endif()
    elseif(NOT type STREQUAL "NUMBER")
        string(APPEND bad "  ${key}: ${value} is a ${type}, not a number\n")
    elseif(op STREQUAL ">0" AND NOT value GREATER 0)
        string(APPEND bad "  ${key}: ${value}, want > 0\n")
    elseif(op MATCHES "^=" AND NOT value EQUAL want)
        string(APPEND bad "  ${key}: ${value}, want ${want}\n")
    endif()
endforeach()
if(bad)
    message(FATAL_ERROR "check_run: the output fails its checks:\n${bad}")
endif()
list(LENGTH checks n)
message("check_run: exit 0, ${n} check(s) hold")
