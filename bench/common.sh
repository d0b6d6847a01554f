# Sourced by the bench scripts: the project's and ../shared's paths, every SigmaHQ rule
# set as `--sigma` arguments, and `release_binary`, which builds and sets `$bin`.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${PORTCULLIS_SHARED:-$here/../shared}
# Every SigmaHQ rule set, when ../shared has them (else none: Portcullis's pack alone).
every_sigma_rule=()
if [ -d "$shared/sigma/rules" ]; then
  for d in rules rules-emerging-threats rules-threat-hunting rules-compliance; do every_sigma_rule+=(--sigma "$shared/sigma/$d"); done
fi
release_binary() {
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
  bin=$here/target/release/portcullis
}
