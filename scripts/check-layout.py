#!/usr/bin/env python3
"""Checks the layout rules of docs/architecture.md on src/ and prints what it measured:
- no file in src/ over 600 lines;
- no function over 80 lines outside tests (`#[cfg(test)]` modules are skipped);
- no import cycle between modules (a module is a file's path under src/, `a/b.rs` -> `a::b`;
  a `use crate::x::y` in module m is an edge m -> the longest known module prefix of x::y,
  collapsed to top-level modules and to the second level inside one top-level module).
Exit status 1 when a rule is broken.
    scripts/check-layout.py
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_FILE, MAX_FN = 600, 80

def files():
    for d, _, fs in os.walk(ROOT):
        for f in fs:
            if f.endswith(".rs"):
                yield os.path.join(d, f)

def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel

def strip_tests(lines):
    out, skip, depth = [], False, 0
    for i, l in enumerate(lines):
        if not skip and l.strip() == "#[cfg(test)]" and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("mod "):
            skip, depth = True, 0
            out.append("")
            continue
        if skip:
            depth += l.count("{") - l.count("}")
            out.append("")
            if depth <= 0 and "}" in l:
                skip = False
            continue
        out.append(l)
    return out

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?fn\s+(\w+)")

def long_fns(path, lines):
    found = []
    for i, l in enumerate(lines):
        m = FN.match(l)
        if not m:
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            depth += lines[j].count("{") - lines[j].count("}")
            if "{" in lines[j]:
                started = True
            if started and depth <= 0:
                break
            if not started and lines[j].rstrip().endswith(";"):
                break
            j += 1
        n = j - i + 1
        if started and n > MAX_FN:
            found.append((n, f"{os.path.relpath(path, ROOT)}:{i+1} {m.group(5)}"))
    return found

def edges():
    mods = {tuple(module_of(p)) for p in files()}
    graph = {}
    for p in files():
        me = tuple(module_of(p))
        code = [l.split("//")[0] for l in strip_tests(open(p).read().splitlines())]
        text = "\n".join(code)
        for m in re.finditer(r"crate::((?:\w+::)*\w+)", text):
            parts = tuple(m.group(1).split("::"))
            target = max((parts[:k] for k in range(1, len(parts) + 1) if parts[:k] in mods), key=len, default=parts[:1])
            a, b = me[:1], target[:1]
            if a == b and len(me) > 1 and len(target) > 1:
                a, b = me[:2], target[:2]
            if a != b:
                graph.setdefault(a, set()).add(b)
        # `super::x` inside a module tree: an edge between siblings
        for m in re.finditer(r"\bsuper::(\w+)", text):
            if len(me) >= 2:
                sib = me[:-1] + (m.group(1),)
                if sib in mods and sib[:2] != me[:2]:
                    graph.setdefault(me[:2], set()).add(sib[:2])
    return graph

def cycles(graph):
    found, state = [], {}
    def visit(n, stack):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2
    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found

bad = False
sizes = sorted(((len(open(p).read().splitlines()), os.path.relpath(p, ROOT)) for p in files()), reverse=True)
print(f"largest files: " + ", ".join(f"{f} {n}" for n, f in sizes[:5]))
over = [(n, f) for n, f in sizes if n > MAX_FILE]
for n, f in over:
    print(f"  file over {MAX_FILE} lines: src/{f} ({n})"); bad = True
fns = []
for p in files():
    fns += long_fns(p, strip_tests(open(p).read().splitlines()))
fns.sort(reverse=True)
print(f"functions over {MAX_FN} lines outside tests: {len(fns)}")
for n, f in fns:
    print(f"  {f} ({n} lines)"); bad = True
cyc = cycles(edges())
print(f"import cycles between modules: {len(cyc)}")
for c in cyc:
    print("  " + " -> ".join("::".join(x) for x in c)); bad = True
sys.exit(1 if bad else 0)
