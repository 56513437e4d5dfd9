#!/usr/bin/env bash
# The package as a user gets it: `npm pack` this checkout, `npm install` the
# tarball into an empty project with the default build (no IMPRINT_* variables),
# then use it from there: an import and one tensor op, and `npx imprint demo`,
# which must write into the user's folder and change nothing in
# node_modules/imprint. Prints each step's time; removes its temp folders.
# Where prebuilds/ exists the tarball carries it and the install uses the
# prebuilt binary instead of building (the script says which it was).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

# The default build: none of the switches CI (.ci/run) or a developer set.
while read -r name; do unset "$name"; done < <(env | sed -n 's/^\(IMPRINT_[A-Za-z0-9_]*\)=.*/\1/p')

work="$(mktemp -d "${TMPDIR:-/tmp}/imprint-package-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
timings=()
step_start=0
begin() { echo "== $1"; step_name="$1"; step_start=$(date +%s.%N); }
end() {
  local s; s=$(awk -v a="$step_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  timings+=("$(printf '%-44s %8s s' "$step_name" "$s")")
  echo "   ($s s)"
}
fail() { echo "package test: $*" >&2; exit 1; }

begin "npm pack (prepare: tsc)"
mkdir "$work/pack"
(cd "$repo" && npm pack --pack-destination "$work/pack" --no-fund >"$work/pack.log" 2>&1) || { cat "$work/pack.log"; fail "npm pack failed"; }
tarball="$(ls "$work"/pack/*.tgz)"
tar -tzf "$tarball" >"$work/contents"
for f in package/dist/index.js package/dist/index.d.ts package/dist/cli/main.js package/lib/build/install.mjs package/lib/world/model/model_index.json package/CMakeLists.txt; do
  grep -qx "$f" "$work/contents" || fail "the tarball lacks $f"
done
if grep -q -e '^package/test/' -e '^package/lib/world/world-pretrain/' -e '^package/build/' "$work/contents"; then
  fail "the tarball holds test/, build/ or pretraining checkpoints"
fi
prebuilt=no
if grep -q '^package/prebuilds/.*\.node$' "$work/contents"; then prebuilt=yes; fi
echo "   $(basename "$tarball"): $(wc -l <"$work/contents") files, $(du -h "$tarball" | cut -f1), prebuilt binaries: $prebuilt"
end

begin "npm install <tarball> (default build)"
app="$work/app"
mkdir "$app"
cd "$app"
npm init -y >/dev/null
npm pkg set type=module
# --foreground-scripts: the build's output goes to this log (npm hides it otherwise).
if ! npm install "$tarball" --no-audit --no-fund --foreground-scripts >"$work/install.log" 2>&1; then
  tail -n 60 "$work/install.log"
  fail "npm install of the tarball failed"
fi
pkg="$app/node_modules/imprint"
grep '^imprint: ' "$work/install.log" | grep -v '^imprint: /' || true
last="$(grep '^imprint: ' "$work/install.log" | tail -n 1)"
if [ "$prebuilt" = no ]; then
  [ -f "$pkg/build/Release/imprint.node" ] || fail "no build/Release/imprint.node after the source build"
  [ ! -e "$pkg/build/imprint_parity" ] || fail "the install built the parity executable"
  case "$last" in
    "imprint: built "*) ;;
    *) fail "the install's last imprint line is not the build summary: $last" ;;
  esac
fi
for dev in tsx typescript prebuildify uvu; do
  if [ -e "$app/node_modules/$dev" ]; then fail "the install pulled in the devDependency $dev"; fi
done
if [ -e "$pkg/test" ]; then fail "node_modules/imprint holds test/"; fi
end

# Everything in the installed package, to compare after use.
checksums() { (cd "$pkg" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
checksums >"$work/before.sha256"

begin "import and one tensor op"
cat >"$app/check.js" <<'EOF'
import { tensor, matmul, buildInfo } from 'imprint';
const a = tensor(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] });
const b = tensor(new Float32Array([7, 8, 9, 10, 11, 12]), { shape: [3, 2] });
const c = await matmul(a, b);
const got = Array.from(c.dataSync());
const want = [58, 64, 139, 154];
if (c.shape.join() !== '2,2' || got.join() !== want.join()) {
  console.error(`matmul: got ${got} (shape ${c.shape}), want ${want}`);
  process.exit(1);
}
console.log('   matmul [2,3]x[3,2] =', got.join(' '), '| buildInfo:', JSON.stringify(buildInfo()));
EOF
node check.js
end

begin "npx imprint demo --num 1"
npx --no imprint demo --num 1 >"$work/demo.log" 2>&1 || { cat "$work/demo.log"; fail "imprint demo failed"; }
tail -n 1 "$work/demo.log" | sed 's/^/   /'
[ -f "$app/imprint-demo.png" ] || fail "the demo did not write imprint-demo.png into the user's folder"
[ "$(head -c 8 "$app/imprint-demo.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "imprint-demo.png is not a PNG"
end

begin "node_modules/imprint unchanged"
checksums >"$work/after.sha256"
if ! diff "$work/before.sha256" "$work/after.sha256"; then fail "using the package changed files in node_modules/imprint"; fi
echo "   $(wc -l <"$work/after.sha256") files, the same checksums before and after"
end

echo "== package test passed; step times:"
printf '   %s\n' "${timings[@]}"
