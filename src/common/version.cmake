# version.cmake: `cmake -DSRC=DIR -DOUT=FILE [-DGIT=git] -P version.cmake` writes FILE, a header
# defining GPTOSS_SOURCE_VERSION, the version of the source tree DIR. Run at every build (target
# gptoss_version_header), so the version is the tree's as built, not as configured:
#   1. a git checkout: `git describe --always --dirty --abbrev=10` and the commit date;
#   2. else (a source tarball from `git archive`, e.g. GitHub's): the commit `git archive` wrote
#      into src/common/version_archive.txt (export-subst in .gitattributes);
#   3. else "unknown".
# FILE is rewritten only when its text changes (no rebuild otherwise).
set(version "")
if(GIT AND EXISTS "${SRC}/.git")
  execute_process(COMMAND "${GIT}" -C "${SRC}" describe --always --dirty --abbrev=10
                  OUTPUT_VARIABLE desc RESULT_VARIABLE rc1 OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  execute_process(COMMAND "${GIT}" -C "${SRC}" log -1 --format=%cs
                  OUTPUT_VARIABLE date RESULT_VARIABLE rc2 OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc1 EQUAL 0 AND rc2 EQUAL 0 AND desc)
    set(version "${desc} (${date})")
  endif()
endif()
if(version STREQUAL "" AND EXISTS "${SRC}/src/common/version_archive.txt")
  file(STRINGS "${SRC}/src/common/version_archive.txt" archive LIMIT_COUNT 1)
  if(archive MATCHES "^([0-9a-f]+) ([0-9-]+)$")
    set(version "${CMAKE_MATCH_1} (${CMAKE_MATCH_2}, source archive)")
  endif()
endif()
if(version STREQUAL "")
  set(version "unknown (neither a git checkout nor a git archive)")
endif()
set(text "// Written by src/common/version.cmake at build time.\n#define GPTOSS_SOURCE_VERSION \"${version}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
