#!/bin/sh
# Stands in for ssh in `sshfs -o ssh_command=bench/fake-ssh.sh localhost:DIR MNT`: whatever
# sshfs passes (options, host, "-s sftp") is ignored and the local SFTP server answers on
# stdin/stdout, so sshfs speaks SFTP over a pipe, with no ssh and no network in between.
exec "${SFTP_SERVER:-/usr/lib/openssh/sftp-server}"
