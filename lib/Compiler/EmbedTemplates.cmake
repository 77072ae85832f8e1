# Writes OUT: a C++ file defining muse::embeddedTemplates() with every *.cuh and
# *.h file under ROOT, as bytes (no escaping pitfalls), sorted by relative path.
file(GLOB_RECURSE files RELATIVE "${ROOT}" "${ROOT}/*.cuh" "${ROOT}/*.h")
list(SORT files)
set(arrays "")
set(entries "")
set(i 0)
foreach(rel IN LISTS files)
  file(READ "${ROOT}/${rel}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR size "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND arrays "// ${rel}\nconst unsigned char k${i}[] = {${bytes}0};\n")
  string(APPEND entries "      {\"${rel}\", std::string(reinterpret_cast<const char *>(k${i}), ${size})},\n")
  math(EXPR i "${i} + 1")
endforeach()
set(text "// Generated from templates/ by lib/Compiler/EmbedTemplates.cmake; do not edit.
#include \"muse/Compiler/Compiler.h\"

namespace {
${arrays}} // namespace

const std::vector<std::pair<std::string, std::string>> &muse::embeddedTemplates() {
  static const std::vector<std::pair<std::string, std::string>> files = {
${entries}  };
  return files;
}
")
# Rewrite only on change, so an unchanged template tree rebuilds nothing.
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
  if(old STREQUAL text)
    return()
  endif()
endif()
file(WRITE "${OUT}" "${text}")
