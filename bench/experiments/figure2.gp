# Figure 2 from figure2.csv (Table 1 and Table 2 summaries): size against metric, mean over seeds
# with the min-max spread. Run by figure2.sh as: gnuplot -e "out='DIR'" figure2.gp
set datafile separator ","
set terminal pngcairo size 1600,480 font "sans,10"
set output out."/figure2.png"
file = out."/figure2.csv"
set logscale x 10
set format x "%.2g"
set xlabel "model size (MB, log scale; compressed: the .qnz file)"
set grid
set key outside bottom center horizontal
set multiplot layout 1,3
# The row labels' first words pick the training: float, "no noise", QAT, Quant-Noise.
trainings = "float no QAT Quant-Noise"
name(i) = (i == 2) ? "no noise" : word(trainings, i)
# NaN unless the row is the task's and its label starts with `training`; every column goes through
# it, since gnuplot autoscales on error bars even where x is NaN.
is(task, training, value) = (strcol(2) eq task && strstrt(strcol(3), training) == 1) ? value : NaN
set title "Fashion-MNIST, EfficientNet-style CNN (labels: scheme)"
set ylabel "test accuracy (%)"
plot for [i = 1:4] file \
       using (is("image", name(i), $7)):(is("image", name(i), 100*$11)):(is("image", name(i), 100*$12)):(is("image", name(i), 100*$13)) \
       with yerrorbars pt 7 ps 1.2 title name(i), \
     file using (is("image", "no noise", $7)):(is("image", "no noise", 100*$11)):5 with labels offset 0,1 font ",8" notitle
set title "KJV language model (labels: scheme; grey: Table 2's 4-layer models)"
set ylabel "test perplexity"
plot for [i = 1:4] file \
       using (is("lm", name(i), $7)):(is("lm", name(i), $11)):(is("lm", name(i), $12)):(is("lm", name(i), $13)) \
       with yerrorbars pt 7 ps 1.2 title name(i), \
     file using (is("lm", "no noise", $7)):(is("lm", "no noise", $11)):5 with labels offset 0,1 font ",8" notitle, \
     file using (strcol(2) eq "lm4" ? $7 : NaN):(strcol(2) eq "lm4" ? $11 : NaN) with points pt 6 lc rgb "grey50" title "Table 2"
set title "KJV next-verse pairs, encoder classifier (labels: scheme)"
set ylabel "test accuracy (%)"
plot for [i = 1:4] file \
       using (is("pairs", name(i), $7)):(is("pairs", name(i), 100*$11)):(is("pairs", name(i), 100*$12)):(is("pairs", name(i), 100*$13)) \
       with yerrorbars pt 7 ps 1.2 title name(i), \
     file using (is("pairs", "no noise", $7)):(is("pairs", "no noise", 100*$11)):5 with labels offset 0,1 font ",8" notitle
unset multiplot
