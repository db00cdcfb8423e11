# The real-kernel tier (tests/realkernel/, see its README.md): a guest on QEMU's emulated
# Intel 82576 (`-device igb`) runs the real igb/igbvf/vfio-pci drivers under a Debian kernel.
#
# `realkernel-cache` fetches QEMU >= 8, the kernel, udev and busybox from the machine's own
# Debian mirror into .cache/realkernel/ (private apt lists: the host's apt setup is not
# changed) and reuses them on later runs. When they cannot be had it says why and succeeds,
# and the tier skips with that reason; `realkernel-refresh` fetches again and fails loudly.
.PHONY: realkernel-cache realkernel-refresh test-realkernel

realkernel-cache: deps
	$(PY) tests/realkernel/cache.py

realkernel-refresh: deps
	$(PY) tests/realkernel/cache.py --refresh --strict

# Plain `make test` (CI) runs the tier too, so it fetches first.
test: realkernel-cache

test-realkernel: realkernel-cache
	$(PY) -m pytest -q -n 2 tests/realkernel
