# scripts/lib/benchargs.sh: the one argument the bench scripts take. Their settings are
# environment variables; --help prints the script's header comment (from its second line
# to its `set -euo`), anything else is refused with exit 2.
#   source scripts/lib/benchargs.sh; bench_args "$0" "$@"
bench_args() { # bench_args SCRIPT [ARG]
    local script=$1
    shift
    case "${1:-}" in
    '') return 0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "${script##*/}: unknown argument '$1' (the settings are environment variables: --help)" >&2
        exit 2
        ;;
    esac
}
