"""Where commands run: this machine (in-process runners need no transport) or an ADB device."""
