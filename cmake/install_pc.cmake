# Writes <prefix>/<libdir>/pkgconfig/kvant.pc for the prefix the install
# really goes to (`cmake --install --prefix P` sets CMAKE_INSTALL_PREFIX to P
# only while installing). Run by install(SCRIPT) after install(CODE) set
# KVANT_PC_IN and the folder variables.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(DEFINED ENV{DESTDIR})
  set(dest "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
else()
  set(dest "${CMAKE_INSTALL_PREFIX}")
endif()
configure_file("${KVANT_PC_IN}" "${dest}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/kvant.pc" @ONLY)
message(STATUS "Installing: ${dest}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/kvant.pc")
