# Figure 2 from figure2.csv (Table 1 and Table 2 summaries): size against metric, mean over seeds
# with the min-max spread. Run by figure2.sh as: gnuplot -e "out='DIR'" figure2.gp
# figure2.awk, next to this script, works out where the points and labels go: the points of one
# size side by side, one label per scheme over its points, one per Table 2 row beside its point.
set datafile separator ","
set terminal pngcairo size 1500,1300 font "sans,12"
set output out."/figure2.png"
here = ARG0[1:strlen(ARG0) - strlen("figure2.gp")]
data = "< awk -f '".here."figure2.awk' '".out."/figure2.csv'"

# The training arms (figure2.awk's third column) by marker and colour: linetypes 1-3.
set linetype 1 lc rgb "#0072B2" pt 7 ps 1.5 lw 1.5
set linetype 2 lc rgb "#D55E00" pt 5 ps 1.4 lw 1.5
set linetype 3 lc rgb "#009E73" pt 9 ps 1.8 lw 1.5
array arms[3] = ["no noise (float included)", "QAT (p = 1)", "Quant-Noise (p as in Tables 1 and 2)"]
# A column's value on the rows of one kind, panel and arm (0: any), NaN elsewhere; every column
# goes through it, since gnuplot autoscales on error bars even where x is NaN.
on(kind, panel, arm, value) = (strcol(1) eq kind && strcol(2) eq panel && (arm == 0 || $3 == arm)) ? value : NaN
# The same for a label aligned on `side` (figure2.awk's last column).
group(panel, side, value) = (strcol(9) eq side) ? on("group", panel, 0, value) : NaN
label(panel, side, value) = (strcol(9) eq side) ? on("label", panel, 0, value) : NaN

set logscale x 10
set autoscale xfix
# Tics at 1, 2 and 5 times a power of 10, near the panel's points (tics far outside them make
# gnuplot warn "difficulty making room for xtic labels").
ticks = 'stats data using (on("point", panel, 0, $4)):(on("point", panel, 0, $5)) nooutput name "X"; set xtics ("" 1e-9); \
  do for [d = -4:4] { do for [m in "1 2 5"] { v = m * 10.0**d; if (v >= X_min_x / 1.3 && v <= X_max_x * 1.3) { set xtics add (sprintf("%g", v) v) } } }'
set xlabel "model size (MB, log scale; compressed: the .qnz file)"
set grid
set bars 0.5
unset key
# Room above the points for the labels.
set offsets graph 0.05, graph 0.05, graph 0.12, graph 0.04
set multiplot layout 2,2 margins 0.06,0.98,0.11,0.96 spacing 0.07,0.11

# Table 1's panels: the points of each arm, the schemes' labels above them.
points = 'for [a = 1:3] data using (on("point", panel, a, $4)):(on("point", panel, a, $5)):(on("point", panel, a, $6)):(on("point", panel, a, $7)) with yerrorbars lt a notitle'
groups = 'data using (group(panel, "left", $4)):(group(panel, "left", $5)):8 with labels left offset 0,1 notitle, \
  data using (group(panel, "center", $4)):(group(panel, "center", $5)):8 with labels center offset 0,1 notitle, \
  data using (group(panel, "right", $4)):(group(panel, "right", $5)):8 with labels right offset 0,1 notitle'

set title "Table 1: Fashion-MNIST, EfficientNet-style CNN"
set ylabel "test accuracy (%)"
panel = "image"
@ticks
plot @points, @groups

set title "Table 1: KJV next-verse pairs, encoder classifier"
panel = "pairs"
@ticks
plot @points, @groups

# The language model's two panels share one y range.
lm(value) = (strcol(1) eq "point" && strstrt(strcol(2), "lm") == 1) ? value : NaN
stats data using (lm($6)):(lm($7)) nooutput name "LM"
set yrange [LM_min_x - 0.04 * (LM_max_y - LM_min_x) : LM_max_y + 0.12 * (LM_max_y - LM_min_x)]
set title "Table 1: KJV language model (2 layers)"
set ylabel "test perplexity"
panel = "lm"
@ticks
plot @points, @groups

# Table 2's panel: a label per scheme (iPQ, float) and one per row, in its arm's colour, left of
# the smaller models of a scheme and right of the larger; room on both sides for them.
set offsets graph 0.45, graph 0.2, 0, 0
set title "Table 2: KJV language model, 4 layers (LayerDrop: pruned to 2; QN: Quant-Noise)"
panel = "lm4"
@ticks
plot @points, @groups, \
     data using (label(panel, "left", $4)):(label(panel, "left", $5)):8:3 with labels right offset -1,0 tc variable font ",11" notitle, \
     data using (label(panel, "right", $4)):(label(panel, "right", $5)):8:3 with labels left offset 1,0 tc variable font ",11" notitle

# The legend, across the bottom: an empty plot with a key.
set origin 0, 0
set size 1, 0.05
set margins 0, 0, 0, 0
unset title; unset xlabel; unset ylabel; unset border; unset tics; unset grid
unset logscale x
set xrange [0:1]; set yrange [0:1]
set key center center horizontal reverse Left samplen 1 width 3 font ",13"
plot for [a = 1:3] '+' using (NaN):(NaN):(NaN):(NaN) with yerrorbars lt a title arms[a]
unset multiplot
