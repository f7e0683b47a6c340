# Project-wide compiler settings, as an INTERFACE target that every first-party
# target links PRIVATE (so nothing leaks into consumers' flags).
add_library(pc_settings INTERFACE)
target_compile_features(pc_settings INTERFACE cxx_std_23)
target_compile_options(pc_settings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Wunused -Woverloaded-virtual -Wconversion -Wsign-conversion
  -Wnull-dereference -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
  $<$<CXX_COMPILER_ID:GNU>:-Wduplicated-cond -Wlogical-op>
  $<$<BOOL:${PC_WERROR}>:-Werror>
  -fstack-protector-strong)
target_compile_definitions(pc_settings INTERFACE
  $<$<CONFIG:Debug>:_GLIBCXX_ASSERTIONS>
  $<$<NOT:$<CONFIG:Debug>>:_FORTIFY_SOURCE=2>)
target_link_options(pc_settings INTERFACE -Wl,-z,relro,-z,now)

if(PC_SANITIZE)
  # e.g. -DPC_SANITIZE=address,undefined
  target_compile_options(pc_settings INTERFACE -fsanitize=${PC_SANITIZE} -fno-omit-frame-pointer)
  target_link_options(pc_settings INTERFACE -fsanitize=${PC_SANITIZE})
endif()
