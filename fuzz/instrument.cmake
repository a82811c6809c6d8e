# Included by the top-level CMakeLists.txt when LB_FUZZ is set, before any library is defined:
# every object a fuzz target links (lb_proto, lb_common, ... compiled again in the fuzz build
# directory) gets libFuzzer's coverage instrumentation and ASan + UBSan, so that the fuzzer
# sees the branches of the code under test and any memory error or undefined behaviour in it
# is a crash. The normal build (LB_FUZZ off) is untouched.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "LB_FUZZ needs clang (libFuzzer): configure with CC=clang CXX=clang++, "
                      "or run scripts/fuzz, which does")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer -gline-tables-only)
add_link_options(-fsanitize=address,undefined)
