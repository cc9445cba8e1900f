# Debian packages, one per component (`cpack -G DEB` in the build tree):
#   slullama-cli     slullama (serve/connect/status/wake) and its man page
#   slullama-daemon  slullama-daemon, systemd units, job template, man page  Depends: slullama-cli
#   slullama-tray    slullama-tray, launcher, autostart entry, icons, man page  Depends: slullama-cli
# The CLI is its own package because both machines want it and two packages cannot own
# /usr/bin/slullama; `apt install ./slullama-daemon_*.deb ./slullama-cli_*.deb` (or an apt
# repository) pulls it in.

set(SLULLAMA_PACKAGE_MAINTAINER "slullama maintainers <maintainers@slullama.example.org>"
    CACHE STRING "Maintainer field of the Debian packages (placeholder: set for a release)")
set(SLULLAMA_PACKAGE_HOMEPAGE "https://slullama.example.org/"
    CACHE STRING "Homepage field of the Debian packages (placeholder: set for a release)")

set(CPACK_PACKAGE_NAME "slullama")
set(CPACK_PACKAGE_VENDOR "The slullama authors")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${SLULLAMA_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_HOMEPAGE_URL "${SLULLAMA_PACKAGE_HOMEPAGE}")
# Each package's own first description line is its synopsis; CPack would put the project's
# summary in front of it.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
set(CPACK_PACKAGE_DIRECTORY "${CMAKE_BINARY_DIR}/packages")
set(CPACK_GENERATOR "DEB")
# Install for /usr with DESTDIR staging, so that the install-time configured files (units, man
# pages; see installers/CMakeLists.txt) name /usr paths, not the staging directory.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

set(SLULLAMA_PACKAGE_COMPONENTS cli daemon)
if(SLULLAMA_BUILD_TRAY)
    list(APPEND SLULLAMA_PACKAGE_COMPONENTS tray)
endif()
set(CPACK_COMPONENTS_ALL ${SLULLAMA_PACKAGE_COMPONENTS})
set(CPACK_DEB_COMPONENT_INSTALL ON)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SLULLAMA_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${SLULLAMA_PACKAGE_HOMEPAGE}")
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Library dependencies from dpkg-shlibdeps (Qt Core/Network, toml++, libssh, ... as linked).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
set(CPACK_DEBIAN_COMPRESSION_TYPE "xz")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

set(slullamaSelf "(= ${PROJECT_VERSION})")

set(CPACK_DEBIAN_CLI_PACKAGE_NAME "slullama-cli")
set(CPACK_DEBIAN_CLI_DESCRIPTION
    "shared Ollama gateway over Slurm - command-line tool
slullama gives a team one Ollama endpoint backed by a GPU node that a Slurm
job allocates only while it is used: the first request wakes the node, and
the job is cancelled when nobody has used it for a while.

This package contains the slullama command: serve (the head-node daemon),
connect (an SSH tunnel from a laptop to the head node), status and wake.")

set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME "slullama-daemon")
set(CPACK_DEBIAN_DAEMON_PACKAGE_DEPENDS "slullama-cli ${slullamaSelf}")
set(CPACK_DEBIAN_DAEMON_PACKAGE_RECOMMENDS "slurm-client, openssh-client")
set(CPACK_DEBIAN_DAEMON_DESCRIPTION
    "shared Ollama gateway over Slurm - head-node daemon
slullama gives a team one Ollama endpoint backed by a GPU node that a Slurm
job allocates only while it is used: the first request wakes the node, and
the job is cancelled when nobody has used it for a while.

This package contains slullama-daemon, an authenticated HTTP reverse proxy
speaking the Ollama API that submits the job with sbatch, tunnels to the
compute node with ssh and streams the answers; a systemd user unit, a
systemd system unit template for a team account, and the default sbatch
job template.")
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/installers/debian/daemon/postinst"
    "${PROJECT_SOURCE_DIR}/installers/debian/daemon/prerm"
    "${PROJECT_SOURCE_DIR}/installers/debian/daemon/postrm")

set(CPACK_DEBIAN_TRAY_PACKAGE_NAME "slullama-tray")
# Qt loads the xcb platform plugin and the SVG icon engine at run time: dpkg-shlibdeps cannot
# see them.
set(CPACK_DEBIAN_TRAY_PACKAGE_DEPENDS "slullama-cli ${slullamaSelf}, qt6-qpa-plugins, libqt6svg6")
set(CPACK_DEBIAN_TRAY_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_TRAY_DESCRIPTION
    "shared Ollama gateway over Slurm - system tray program
slullama gives a team one Ollama endpoint backed by a GPU node that a Slurm
job allocates only while it is used: the first request wakes the node, and
the job is cancelled when nobody has used it for a while.

This package contains slullama-tray, for team members' computers: it keeps
an SSH tunnel (libssh) to the head node open so that http://localhost:11434
is the shared endpoint, shows whether the GPU node sleeps, is queued,
starting or ready, and wakes it with one click.")

include(CPack)
