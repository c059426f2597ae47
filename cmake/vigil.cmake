# vigil_test(NAME SOURCES... LIBS... LABELS...)
# One GoogleTest binary; each TEST / TEST_F becomes a ctest entry carrying the
# labels and the environment (VIGIL_SOURCE_DIR, VIGIL_BINARY_DIR).
# gtest_add_tests scans the sources at configure time; unlike
# gtest_discover_tests it passes list-valued properties (two labels, two
# environment variables) through intact.
function(vigil_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  gtest_add_tests(TARGET ${name} SOURCES ${T_SOURCES} TEST_LIST tests)
  set_tests_properties(${tests} PROPERTIES
    LABELS "${T_LABELS}"
    ENVIRONMENT "VIGIL_SOURCE_DIR=${PROJECT_SOURCE_DIR};VIGIL_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()
