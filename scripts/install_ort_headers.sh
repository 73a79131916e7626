#!/usr/bin/env bash
# Fetch ONNX Runtime's official C/C++ headers without installing anything.
#
# Usage: scripts/install_ort_headers.sh [DEST]
#
# The onnxruntime Python wheel ships the shared library but no headers. This
# script downloads Debian's libonnxruntime-dev package (only the trixie suite
# has it) through a private, throw-away apt tree, unpacks it, and copies the
# headers to DEST/include (onnxruntime_cxx_api.h etc. directly in that
# directory). DEST/VERSION records the Debian package version. The last line
# of stdout is the include directory.
#
# DEST defaults to the ringflow cache, resolved like ringflow.models.cache_dir():
#   $RINGFLOW_CACHE_DIR/onnxruntime-headers                if RINGFLOW_CACHE_DIR is set
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ringflow/onnxruntime-headers   otherwise
#
# Nothing is installed and the system's apt state is neither used nor
# modified: no apt-get install, no dpkg -i, /etc/apt, /var/lib/apt and
# /var/cache/apt are only read. The mirror is the one this machine's apt
# configuration uses for the main Debian archive; the download is verified
# against the suite's signed index with the Debian archive keyring.
#
# Works as root or as an ordinary user, with no TTY or stdin.
#
# Environment (all optional):
#   RINGFLOW_DEBIAN_MIRROR   mirror URI to use instead of the one derived from apt
#   RINGFLOW_ORT_DEB_SUITE   Debian suite to take the package from (default: trixie)
#   RINGFLOW_ORT_DEB_KEYRING keyring(s) to verify the suite with, comma separated
#
# If this script cannot be used at all, point the build at an unpacked
# ONNX Runtime release instead: ONNXRUNTIME_ROOT=/path/with/include/.

set -euo pipefail

readonly PROG=install_ort_headers
readonly PACKAGE=libonnxruntime-dev
readonly MAIN_HEADER=onnxruntime_cxx_api.h
readonly DEFAULT_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SUITE=${RINGFLOW_ORT_DEB_SUITE:-trixie}

FALLBACK_HINT="Alternatively, set ONNXRUNTIME_ROOT to an unpacked ONNX Runtime release (a directory with include/${MAIN_HEADER}) and skip this script."

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# die STEP MESSAGE [HINT]
die() {
    printf '%s: error: %s failed: %s\n' "$PROG" "$1" "$2" >&2
    if [ -n "${3:-}" ]; then
        printf '%s: hint: %s\n' "$PROG" "$3" >&2
    fi
    printf '%s: %s\n' "$PROG" "$FALLBACK_HINT" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

# --------------------------------------------------------------------------
# Arguments and destination
# --------------------------------------------------------------------------
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    -*) printf '%s: unknown option: %s\n' "$PROG" "$1" >&2; usage >&2; exit 2 ;;
esac
if [ "$#" -gt 1 ]; then
    printf '%s: too many arguments\n' "$PROG" >&2
    usage >&2
    exit 2
fi

if [ -n "${1:-}" ]; then
    DEST=$1
elif [ -n "${RINGFLOW_CACHE_DIR:-}" ]; then
    DEST=$RINGFLOW_CACHE_DIR/onnxruntime-headers
else
    if [ -n "${XDG_CACHE_HOME:-}" ]; then
        cache_root=$XDG_CACHE_HOME
    else
        home=${HOME:-}
        if [ -z "$home" ]; then
            home=$(getent passwd "$(id -u)" | cut -d: -f6) || true
        fi
        [ -n "$home" ] || die "choosing DEST" "HOME is not set" \
            "pass DEST as the first argument or set RINGFLOW_CACHE_DIR"
        cache_root=$home/.cache
    fi
    DEST=$cache_root/ringflow/onnxruntime-headers
fi

# Make DEST absolute (we cd elsewhere later) and tidy it (no ./, no trailing /).
case "$DEST" in
    /*) ;;
    *) DEST=$PWD/$DEST ;;
esac
DEST=$(realpath -m -s -- "$DEST" 2>/dev/null) || DEST=${DEST%/}
INCLUDE_DIR=$DEST/include

# Idempotent fast path: no network, no apt.
if [ -f "$INCLUDE_DIR/$MAIN_HEADER" ]; then
    printf '%s\n' "$INCLUDE_DIR"
    exit 0
fi

# Fail before any download if DEST is occupied by something else; an empty
# directory is fine (rename(2) replaces it atomically).
if [ -e "$DEST" ] || [ -L "$DEST" ]; then
    if [ ! -d "$DEST" ] || [ -n "$(ls -A "$DEST" 2>/dev/null)" ]; then
        die "checking DEST" "$DEST exists but has no include/$MAIN_HEADER" \
            "remove $DEST (it is only a cache) or pass another DEST"
    fi
fi

# Check that DEST can be written before downloading anything.
parent=$(dirname "$DEST")
if ! mkdir -p -- "$parent" 2>/dev/null || [ ! -w "$parent" ]; then
    die "checking DEST" "cannot create or write to $parent" "pass a writable DEST or set RINGFLOW_CACHE_DIR"
fi

for tool in apt-get apt-config dpkg dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "checking tools" "'$tool' not found; this script needs a Debian-based system with apt"
done

# --------------------------------------------------------------------------
# Temporary state, cleaned up on every exit path
# --------------------------------------------------------------------------
TMP=
STAGE=
cleanup() {
    if [ -n "$STAGE" ] && [ -d "$STAGE" ]; then rm -rf -- "$STAGE" || true; fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then rm -rf -- "$TMP" || true; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------
# Derive the Debian mirror and keyring from this machine's apt sources
# --------------------------------------------------------------------------
# Location of the system's sources, honouring any Dir::Etc overrides. This
# runs before APT_CONFIG is pointed at the private tree.
SYS_SOURCELIST=/etc/apt/sources.list
SYS_SOURCEPARTS=/etc/apt/sources.list.d
if apt_paths=$(apt-config shell SYS_SOURCELIST Dir::Etc::sourcelist/f \
    SYS_SOURCEPARTS Dir::Etc::sourceparts/d 2>/dev/null); then
    eval "$apt_paths"
fi
SYS_SOURCEPARTS=${SYS_SOURCEPARTS%/}

CODENAME=
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    CODENAME=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
fi

# Print candidate entries as "RANK<TAB>URI<TAB>SIGNED-BY<TAB>FILE", where
# RANK 1 = suite is the release codename, 2 = CODENAME-updates, 3 = another
# Debian release suite (only used when the codename is unknown). Security,
# backports, proposed-updates and flat repositories are skipped, as are
# entries without the "main" component.
AWK_COMMON='
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function suite_rank(s,    base) {
    if (s ~ /security/ || s ~ /backports/ || s ~ /proposed/ || s ~ /\/$/) return 0
    if (codename != "" && s == codename) return 1
    if (codename != "" && s == codename "-updates") return 2
    if (codename == "" && s ~ /^(stable|oldstable|testing|unstable|sid|bullseye|bookworm|trixie|forky)(-updates)?$/) return 3
    return 0
}
function has_word(list, w) { return (" " list " ") ~ ("[ \t,]" w "[ \t,]") }
function emit(types, uris, suites, comps, signedby, fname,    n, S, i, r, m, U, j) {
    if (!has_word(types, "deb") || !has_word(comps, "main")) return
    n = split(suites, S, /[ \t]+/)
    for (i = 1; i <= n; i++) {
        r = suite_rank(S[i])
        if (r == 0) continue
        m = split(uris, U, /[ \t]+/)
        for (j = 1; j <= m; j++) {
            if (U[j] == "" || U[j] ~ /^cdrom:/) continue
            print r "\t" U[j] "\t" (signedby == "" ? "-" : signedby) "\t" fname
        }
    }
}
'

parse_deb822() { # FILE
    awk -v codename="$CODENAME" -v fname="$1" "$AWK_COMMON"'
function flush() {
    if (tolower(enabled) != "no" && tolower(enabled) != "false")
        emit(types, uris, suites, comps, signedby, fname)
    types = uris = suites = comps = enabled = signedby = field = ""
    inline_key = 0
}
BEGIN { flush() }
/^#/ { next }
/^[ \t]*$/ { flush(); next }
/^[ \t]/ {
    # Continuation line. A multi-line Signed-By holds an inline key, which
    # cannot be passed on as a file; other fields just get the words appended.
    if (field == "signed-by") { inline_key = 1; signedby = "" }
    else if (field == "types") types = types " " trim($0)
    else if (field == "uris") uris = uris " " trim($0)
    else if (field == "suites") suites = suites " " trim($0)
    else if (field == "components") comps = comps " " trim($0)
    next
}
{
    k = index($0, ":")
    if (k == 0) { field = ""; next }
    field = tolower(trim(substr($0, 1, k - 1)))
    v = trim(substr($0, k + 1))
    if (field == "types") types = v
    else if (field == "uris") uris = v
    else if (field == "suites") suites = v
    else if (field == "components") comps = v
    else if (field == "enabled") enabled = v
    else if (field == "signed-by") signedby = v
}
END { flush() }
' "$1"
}

parse_oneline() { # FILE
    awk -v codename="$CODENAME" -v fname="$1" "$AWK_COMMON"'
/^[ \t]*#/ { next }
{
    line = $0
    signedby = ""
    # Options block: [ key=value key=value ]
    if (match(line, /\[[^]]*\]/)) {
        opts = substr(line, RSTART + 1, RLENGTH - 2)
        line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH)
        n = split(opts, O, /[ \t]+/)
        for (i = 1; i <= n; i++)
            if (tolower(O[i]) ~ /^signed-by=/) signedby = substr(O[i], 11)
    }
    n = split(trim(line), F, /[ \t]+/)
    if (n < 4 || F[1] != "deb") next
    comps = ""
    for (i = 4; i <= n; i++) comps = comps " " F[i]
    emit("deb", F[2], F[3], comps, signedby, fname)
}
' "$1"
}

find_mirror() {
    local f
    {
        if [ -f "$SYS_SOURCELIST" ] && [ -r "$SYS_SOURCELIST" ]; then
            parse_oneline "$SYS_SOURCELIST"
        fi
        if [ -d "$SYS_SOURCEPARTS" ]; then
            for f in "$SYS_SOURCEPARTS"/*.list; do
                [ -f "$f" ] && [ -r "$f" ] && parse_oneline "$f"
            done
            for f in "$SYS_SOURCEPARTS"/*.sources; do
                [ -f "$f" ] && [ -r "$f" ] && parse_deb822 "$f"
            done
        fi
        true
    } | sort -s -t "$(printf '\t')" -k1,1n | awk 'NR == 1'
}

MIRROR_URI=${RINGFLOW_DEBIAN_MIRROR:-}
MIRROR_KEYS=
MIRROR_FROM="RINGFLOW_DEBIAN_MIRROR"
if [ -z "$MIRROR_URI" ]; then
    entry=$(find_mirror) || entry=
    [ -n "$entry" ] || die "finding the Debian mirror" \
        "no enabled 'deb' entry for suite '${CODENAME:-<unknown>}' (or -updates) with component 'main' in $SYS_SOURCELIST or $SYS_SOURCEPARTS/*.{list,sources}" \
        "set RINGFLOW_DEBIAN_MIRROR to the URI of a Debian archive mirror"
    IFS=$'\t' read -r _rank MIRROR_URI MIRROR_KEYS MIRROR_FROM <<<"$entry"
fi

# Keyrings: the ones the chosen entry names (file paths only; fingerprints and
# inline keys cannot be reused), plus the Debian archive keyring, which holds
# the keys of all current releases including trixie.
KEYRINGS=()
add_keyring() {
    local k=$1 have
    case "$k" in /*) ;; *) return 0 ;; esac
    [ -f "$k" ] && [ -r "$k" ] || return 0
    for have in "${KEYRINGS[@]+"${KEYRINGS[@]}"}"; do
        [ "$have" = "$k" ] && return 0
    done
    KEYRINGS+=("$k")
}
if [ -n "${RINGFLOW_ORT_DEB_KEYRING:-}" ]; then
    MIRROR_KEYS=$RINGFLOW_ORT_DEB_KEYRING
else
    MIRROR_KEYS="$MIRROR_KEYS $DEFAULT_KEYRING"
fi
read -r -a key_words <<<"${MIRROR_KEYS//,/ }"
for k in "${key_words[@]+"${key_words[@]}"}"; do
    add_keyring "$k"
done
[ "${#KEYRINGS[@]}" -gt 0 ] || die "finding the archive keyring" \
    "none of '${MIRROR_KEYS# }' is a readable keyring file" \
    "install the debian-archive-keyring package (it provides $DEFAULT_KEYRING)"

ARCH=$(dpkg --print-architecture)

log "fetching $PACKAGE from $MIRROR_URI $SUITE/main ($ARCH), mirror taken from $MIRROR_FROM"

# --------------------------------------------------------------------------
# Private apt tree
# --------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringflow-ort-headers.XXXXXX") ||
    die "creating a temporary directory" "mktemp failed" "check that \${TMPDIR:-/tmp} is writable"
# apt (as root) fetches as the unprivileged _apt user, which must be able to
# traverse the tree to reach its partial/ directories.
chmod 755 "$TMP"
mkdir -p "$TMP/etc/apt.conf.d" "$TMP/etc/sources.list.d" "$TMP/etc/preferences.d" \
    "$TMP/state/lists/partial" "$TMP/cache/archives/partial" "$TMP/log" \
    "$TMP/download" "$TMP/extract"
: >"$TMP/state/status"
: >"$TMP/etc/sources.list"

keyring_field=$(IFS=,; printf '%s' "${KEYRINGS[*]}")
cat >"$TMP/etc/sources.list.d/ringflow-ort.sources" <<EOF
Types: deb
URIs: $MIRROR_URI
Suites: $SUITE
Components: main
Architectures: $ARCH
Targets: Packages
Signed-By: $keyring_field
EOF

# apt configuration: the system's settings (proxies, timeouts, validity
# checks) are kept, but the system's apt.conf.d is not read a second time and
# hooks that would run after "apt-get update" (packagekit, appstream refresh,
# ...) are dropped so that nothing outside the private tree is touched.
{
    if [ -n "${APT_CONFIG:-}" ] && [ -f "$APT_CONFIG" ]; then
        printf '#include "%s";\n' "$APT_CONFIG"
    fi
    sys_parts=$(apt-config shell P Dir::Etc::parts/d 2>/dev/null | sed -n "s/^P='\(.*\)'$/\1/p") || sys_parts=
    sys_main=$(apt-config shell M Dir::Etc::main/f 2>/dev/null | sed -n "s/^M='\(.*\)'$/\1/p") || sys_main=
    if [ -n "$sys_parts" ] && [ -d "$sys_parts" ]; then
        printf '#include "%s/";\n' "${sys_parts%/}"
    fi
    if [ -n "$sys_main" ] && [ -f "$sys_main" ]; then
        printf '#include "%s";\n' "$sys_main"
    fi
    cat <<EOF
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear APT::Default-Release;
#clear APT::Architectures;
APT::Architecture "$ARCH";
APT::Architectures { "$ARCH"; };
Dir::Etc::Parts "$TMP/etc/apt.conf.d";
Dir::Etc::Main "/dev/null";
EOF
} >"$TMP/etc/apt.conf"
export APT_CONFIG=$TMP/etc/apt.conf

APT_OPTS=(
    -qq
    -o "Dir::Etc::SourceList=$TMP/etc/sources.list"
    -o "Dir::Etc::SourceParts=$TMP/etc/sources.list.d"
    -o "Dir::Etc::Preferences=$TMP/etc/preferences"
    -o "Dir::Etc::PreferencesParts=$TMP/etc/preferences.d"
    -o "Dir::State=$TMP/state"
    -o "Dir::State::Lists=$TMP/state/lists"
    -o "Dir::State::status=$TMP/state/status"
    -o "Dir::State::extended_states=$TMP/state/extended_states"
    -o "Dir::Cache=$TMP/cache"
    -o "Dir::Cache::Archives=$TMP/cache/archives"
    -o "Dir::Log=$TMP/log"
    -o "Acquire::Languages=none"
    -o "Acquire::Retries=3"
    -o "Acquire::AllowInsecureRepositories=false"
    -o "APT::Get::AllowUnauthenticated=false"
    -o "APT::Get::List-Cleanup=false"
    -o "APT::Update::Error-Mode=any"
)

NONROOT_NOTE=
if [ "$(id -u)" -ne 0 ]; then
    NONROOT_NOTE=" (running as non-root: apt only uses $TMP, so a permission error means a keyring or that directory is unreadable, not that root is needed)"
fi

# run_apt STEP HINT apt-get-args...
run_apt() {
    local step=$1 hint=$2
    shift 2
    if ! apt-get "${APT_OPTS[@]}" "$@" </dev/null >"$TMP/apt.log" 2>&1; then
        sed 's/^/  apt: /' "$TMP/apt.log" >&2
        if grep -q -e NO_PUBKEY -e 'is not signed' -e EXPKEYSIG "$TMP/apt.log"; then
            hint="the keyring(s) ${keyring_field} cannot verify '$SUITE': update the debian-archive-keyring package (it must contain the $SUITE release keys) or point RINGFLOW_ORT_DEB_KEYRING at a keyring that does"
        fi
        die "$step" "apt-get $* exited with an error (output above)" "$hint$NONROOT_NOTE"
    fi
    # Surface warnings even on success.
    grep -E '^(W|E|Err):' "$TMP/apt.log" | sed 's/^/  apt: /' >&2 || true
}

run_apt "downloading the $SUITE package index" \
    "check that $MIRROR_URI is reachable and serves the '$SUITE' suite, and that its Release file verifies with ${keyring_field}; RINGFLOW_DEBIAN_MIRROR selects another mirror" \
    update
# Older apt treats a failed index fetch as a warning; make sure we got one.
if ! find "$TMP/state/lists" -maxdepth 1 -name '*_Packages*' -print -quit | grep -q .; then
    die "downloading the $SUITE package index" "no Packages index for $SUITE/main ($ARCH) was fetched from $MIRROR_URI" \
        "check that $MIRROR_URI is reachable and serves the '$SUITE' suite; RINGFLOW_DEBIAN_MIRROR selects another mirror"
fi

# apt-get download writes into the current directory. As root, let the _apt
# sandbox user write there so apt does not warn about an unsandboxed download.
if [ "$(id -u)" -eq 0 ] && getent passwd _apt >/dev/null 2>&1; then
    chown _apt "$TMP/download" 2>/dev/null || true
fi
(
    cd "$TMP/download"
    run_apt "downloading $PACKAGE" \
        "the '$SUITE' suite at $MIRROR_URI has no $PACKAGE for $ARCH; RINGFLOW_ORT_DEB_SUITE selects another suite" \
        download "$PACKAGE"
)

debs=("$TMP/download/${PACKAGE}_"*.deb)
[ -f "${debs[0]}" ] || die "downloading $PACKAGE" "apt-get download reported success but left no .deb in $TMP/download"
DEB=${debs[0]}

# --------------------------------------------------------------------------
# Unpack and install the headers
# --------------------------------------------------------------------------
VERSION=$(dpkg-deb -f "$DEB" Version) ||
    die "reading $DEB" "dpkg-deb could not read the package's control data"
dpkg-deb -x "$DEB" "$TMP/extract" ||
    die "unpacking $DEB" "dpkg-deb -x failed" "check free space in ${TMPDIR:-/tmp}"

SRC=$TMP/extract/usr/include/onnxruntime
if [ ! -d "$SRC" ]; then
    hdr=$(find "$TMP/extract/usr/include" -name "$MAIN_HEADER" -print -quit 2>/dev/null) || hdr=
    [ -n "$hdr" ] || die "locating headers" "$PACKAGE $VERSION has no $MAIN_HEADER under usr/include"
    SRC=$(dirname "$hdr")
fi

STAGE=$(mktemp -d "$parent/.onnxruntime-headers.tmp.XXXXXX") ||
    die "creating a staging directory in $parent" "mktemp failed" "pass a writable DEST"
chmod "$(printf '%o' $((0777 & ~0$(umask))))" "$STAGE"
mkdir "$STAGE/include"
cp -R "$SRC/." "$STAGE/include/"

# The package ships the main headers at the top of its include directory;
# should a future layout nest them, flatten that directory into include/ too
# (they include each other by bare file name).
if [ ! -f "$STAGE/include/$MAIN_HEADER" ]; then
    hdr=$(find "$STAGE/include" -name "$MAIN_HEADER" -print -quit)
    [ -n "$hdr" ] || die "locating headers" "$MAIN_HEADER missing from $PACKAGE $VERSION"
    find "$(dirname "$hdr")" -maxdepth 1 -type f -name '*.h' -exec cp {} "$STAGE/include/" \;
fi
for h in onnxruntime_c_api.h onnxruntime_cxx_api.h onnxruntime_cxx_inline.h; do
    [ -f "$STAGE/include/$h" ] || die "checking headers" "$h missing from $PACKAGE $VERSION"
done
[ -f "$STAGE/include/onnxruntime_float16.h" ] ||
    log "warning: onnxruntime_float16.h is not in $PACKAGE $VERSION"

printf '%s\n' "$VERSION" >"$STAGE/VERSION"
copyright=$TMP/extract/usr/share/doc/$PACKAGE/copyright
if [ -f "$copyright" ]; then
    cp "$copyright" "$STAGE/copyright"
fi

# Publish atomically. rename(2) replaces DEST only if it is absent or an empty
# directory; if another run won the race, its result is just as good.
if ! mv -T -- "$STAGE" "$DEST" 2>"$TMP/mv.log"; then
    if [ -f "$INCLUDE_DIR/$MAIN_HEADER" ]; then
        log "another run installed $DEST concurrently; keeping it"
    else
        die "installing into $DEST" "$(cat "$TMP/mv.log")" \
            "remove $DEST (it is only a cache) or pass another DEST"
    fi
else
    STAGE=
fi

log "installed ONNX Runtime headers from $PACKAGE $VERSION"
printf '%s\n' "$INCLUDE_DIR"
