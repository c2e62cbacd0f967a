"""What QEMU itself prints among a guest's console lines (QEMU's stderr is merged into its stdout there)."""
import re

# QEMU prefixes its own messages with the program name: "qemu-system-x86_64: warning: ...".
_WARNING = re.compile(r"^qemu-system-[\w-]+: .*\bwarning: ")


def qemu_warnings(lines):
    """QEMU's own warning lines among lines: a vhost-user NIC on our back-ends must start without any."""
    return [line for line in lines if _WARNING.match(line)]
