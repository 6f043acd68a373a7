#!/usr/bin/env bash
# Remove fabnode's service, venv, symlink, udev rules and profile snippet; keeps /etc/fabnode,
# /var/lib/fabnode (the usage log) and /srv/fabnode unless --purge. Same options as install-pi.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/install-pi.sh" --uninstall "$@"
