include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/lakemesh DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS lakemesh lakemesh_dev_consul EXPORT lakemesh-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS lakemesh-dev-consul RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT lakemesh-targets NAMESPACE lakemesh:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lakemesh)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/lakemesh-config.cmake.in
    ${PROJECT_BINARY_DIR}/lakemesh-config.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lakemesh)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lakemesh-config-version.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/lakemesh-config.cmake ${PROJECT_BINARY_DIR}/lakemesh-config-version.cmake
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lakemesh)
