"""Shared by the scripts that regenerate a section of a doc (steering_table.py, qat_table.py): the CPU
line their tables name, and the write of one marked section into a markdown file."""
import os
import platform


def cpu_name():
    """"AMD EPYC (avx2 fma)": the model name and the SIMD features that choose kvant's kernels."""
    name, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == (platform.processor() or "unknown CPU"):
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    have = set(line.split(":", 1)[1].split())
                    flags = [x for x in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if x in have]
    except OSError:
        pass
    return f"{name} ({' '.join(flags) or 'no AVX2'})"


def write_section(path, begin, end, text):
    """Replaces the lines from marker `begin` to marker `end` in `path` by `text` (which holds both
    markers), or appends `text` when the markers are not there yet; other sections stay as they are."""
    old = open(path).read() if os.path.exists(path) else ""
    if begin in old and end in old:
        a = old.index(begin)
        b = old.index(end) + len(end) + 1
        new = old[:a] + text + old[b:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)
