#!/usr/bin/env bash
# Stand-in sources for every target of every workspace member, so that docker/Dockerfile can
# compile the dependencies before it copies the real sources (a cargo-chef-less layer cache).
# Cargo resolves the targets of every member when it loads the workspace, so each declared
# [lib], [[bin]], [[test]], [[bench]] and [[example]] needs a file at its (declared or
# inferred) path. Run from the workspace root; prints the files it created, one per line.
set -euo pipefail

find . -path ./target -prune -o -name Cargo.toml ! -path ./Cargo.toml -type f -print |
  while read -r manifest; do
    awk -v dir="${manifest%/Cargo.toml}" '
      function value() { match($0, /"[^"]*"/); return substr($0, RSTART + 1, RLENGTH - 2) }
      function flush() {
        if (kind == "") return
        if (path == "") {
          if (kind == "lib") path = "src/lib.rs"
          else if (kind == "bin") path = (name == pkg ? "src/main.rs" : "src/bin/" name ".rs")
          else if (kind == "test") path = "tests/" name ".rs"
          else if (kind == "bench") path = "benches/" name ".rs"
          else path = "examples/" name ".rs"
        }
        print (kind == "lib" ? "lib" : "main") "\t" dir "/" path
        kind = ""; name = ""; path = ""
      }
      /^[[:space:]]*\[/ {
        flush()
        section = $0; gsub(/[[:space:]]|#.*/, "", section)
        if (section == "[lib]") kind = "lib"
        else if (section ~ /^\[\[(bin|test|bench|example)\]\]$/) { kind = section; gsub(/[][]/, "", kind) }
        next
      }
      section == "[package]" && /^[[:space:]]*name[[:space:]]*=/ { pkg = value() }
      kind != "" && /^[[:space:]]*name[[:space:]]*=/ { name = value() }
      kind != "" && /^[[:space:]]*path[[:space:]]*=/ { path = value() }
      END { flush(); print "lib\t" dir "/src/lib.rs"; print "main\t" dir "/src/main.rs" }
    ' "$manifest"
  done |
  sort -u -k2,2 |
  while IFS=$'\t' read -r kind file; do
    [[ -e $file ]] && continue
    mkdir -p "$(dirname "$file")"
    if [[ $kind == lib ]]; then : >"$file"; else echo 'fn main() {}' >"$file"; fi
    echo "$file"
  done
