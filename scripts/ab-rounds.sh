# Shared by the side-by-side benchmarks (scripts/bench-*-ab.sh); source it, do not run it.

# median: the median of the numbers on stdin, one a line (the mean of the middle two for an even count).
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

# ab_pair ROUND MEASURE A_ARG B_ARG [ARGS...]: runs `MEASURE A_ARG ARGS...` and `MEASURE B_ARG ARGS...`,
# A first in odd rounds and B first in even ones, so both sides share the machine's slow phases; prints
# "A_FIGURE B_FIGURE B/A".
ab_pair() {
    local round=$1 measure=$2 a_arg=$3 b_arg=$4 a b
    shift 4
    if [ $((round % 2)) = 1 ]; then
        a=$("$measure" "$a_arg" "$@"); b=$("$measure" "$b_arg" "$@")
    else
        b=$("$measure" "$b_arg" "$@"); a=$("$measure" "$a_arg" "$@")
    fi
    echo "$a $b $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')"
}
