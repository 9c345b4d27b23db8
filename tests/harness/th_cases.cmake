# th_add_cases(TARGET PREFIX <p> [TIMEOUT <s>] [LABELS <l>] [CK_TIMEOUT <s>] [ARG] [WORLD])
#
# Registers one ctest entry <p><case> per case that the built binary prints for --list
# (th_check_main), so the C file's case table is the only list. The names are read after
# every build of TARGET (POST_BUILD, like gtest_discover_tests) into <target>_cases.cmake,
# which ctest includes. The case is chosen by CK_RUN_CASE=<case> (default) or, with ARG,
# as the first argument. CK_TIMEOUT sets CK_DEFAULT_TIMEOUT.
# WORLD: the cases share the servers of one keeper (th_world.c): a setup entry
# th_world_up_<target> and a cleanup entry th_world_down_<target> (ctest FIXTURES), and
# TH_WORLD=<build dir>/<target>.world in every entry's environment. ctest -R <one case>
# runs the setup and cleanup with it.
function(th_add_cases target)
  cmake_parse_arguments(A "ARG;WORLD" "PREFIX;TIMEOUT;LABELS;CK_TIMEOUT" "" ${ARGN})
  set(cases ${CMAKE_CURRENT_BINARY_DIR}/${target}_cases.cmake)
  set(include ${CMAKE_CURRENT_BINARY_DIR}/${target}_include.cmake)
  set(world "")
  if(A_WORLD)
    set(world ${CMAKE_CURRENT_BINARY_DIR}/${target}.world)
  endif()
  add_custom_command(
    TARGET ${target} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -D BIN=$<TARGET_FILE:${target}> -D TARGET=${target}
            -D OUT=${cases} -D PREFIX=${A_PREFIX} -D TIMEOUT=${A_TIMEOUT} -D LABELS=${A_LABELS}
            -D CK_TIMEOUT=${A_CK_TIMEOUT} -D ARG=${A_ARG} -D WORLD=${world}
            -P ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/th_discover.cmake
    BYPRODUCTS ${cases}
    COMMENT "Listing the cases of ${target}"
    VERBATIM)
  file(WRITE ${include}
       "if(EXISTS \"${cases}\")\n  include(\"${cases}\")\nelse()\n"
       "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${include})
endfunction()
