# Runs one libFuzzer target for SECONDS on a copy of its seed corpus, so the inputs it finds
# never land in the source tree. A crash, a sanitizer report or a failed invariant fails the test
# and leaves the input in WORK_DIR/artifacts.
# cmake -DFUZZER= -DSOURCE= -DCORPUS= -DDICT_DIR= -DWORK_DIR= -DSECONDS= -P run_fuzzer.cmake
foreach(_var FUZZER SOURCE CORPUS DICT_DIR WORK_DIR SECONDS)
    if(NOT DEFINED ${_var})
        message(FATAL_ERROR "run_fuzzer.cmake: -D${_var}= is missing")
    endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/corpus ${WORK_DIR}/artifacts)
if(IS_DIRECTORY ${CORPUS})
    file(COPY ${CORPUS}/ DESTINATION ${WORK_DIR}/corpus)
endif()

# "// fuzz-dict: a b" in the target's source: concatenate dict/a.dict and dict/b.dict.
set(_dict_args)
file(STRINGS ${SOURCE} _dict_lines REGEX "^// fuzz-dict:")
if(_dict_lines)
    set(_dict ${WORK_DIR}/fuzz.dict)
    file(WRITE ${_dict} "")
    foreach(_line IN LISTS _dict_lines)
        string(REGEX REPLACE "^// fuzz-dict:[ ]*" "" _names "${_line}")
        separate_arguments(_names)
        foreach(_n IN LISTS _names)
            if(NOT EXISTS ${DICT_DIR}/${_n}.dict)
                message(FATAL_ERROR "${SOURCE} names dictionary ${_n}, but ${DICT_DIR}/${_n}.dict is missing")
            endif()
            file(READ ${DICT_DIR}/${_n}.dict _content)
            file(APPEND ${_dict} "${_content}\n")
        endforeach()
    endforeach()
    set(_dict_args -dict=${_dict})
endif()

execute_process(
    COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
            -print_final_stats=1 -artifact_prefix=${WORK_DIR}/artifacts/ ${_dict_args}
            ${WORK_DIR}/corpus
    RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
    file(GLOB _artifacts ${WORK_DIR}/artifacts/*)
    message(FATAL_ERROR "${FUZZER} failed (${_rc}). Input(s): ${_artifacts}\n"
                        "Reproduce with: ${FUZZER} <input>")
endif()
