# Figure 2 from figure2.csv (Table 1 and Table 2 summaries): size against metric.
# Run by figure2.sh as: gnuplot -e "out='DIR'" figure2.gp
set datafile separator ","
set terminal pngcairo size 1100,460 font "sans,10"
set output out."/figure2.png"
file = out."/figure2.csv"
set logscale x 2
set xlabel "model size (MB, log scale; compressed: the .qnz file)"
set grid
set key outside bottom center horizontal
set multiplot layout 1,2
is(task, training, value) = (strcol(2) eq task && strstrt(strcol(3), training) == 1) ? value : NaN
set title "Fashion-MNIST, EfficientNet-style CNN"
set ylabel "test accuracy (%)"
plot file using (is("image", "float", $7)):(100*$11):(100*$12):(100*$13) with yerrorbars pt 9 ps 1.6 lc rgb "black" title "float", \
     file using (is("image", "no noise", $7)):(100*$11):(100*$12):(100*$13) with yerrorbars pt 7 lc rgb "#d62728" title "no noise", \
     file using (is("image", "QAT", $7)):(100*$11):(100*$12):(100*$13) with yerrorbars pt 5 lc rgb "#ff7f0e" title "QAT", \
     file using (is("image", "Quant-Noise", $7)):(100*$11):(100*$12):(100*$13) with yerrorbars pt 11 ps 1.4 lc rgb "#1f77b4" title "Quant-Noise", \
     file using (is("image", "no noise", $7)):(100*$11):5 with labels offset 0,1 font ",8" notitle
set title "KJV language model (2 layers; 4-layer models of Table 2 in grey)"
set ylabel "test perplexity"
plot file using (is("lm", "float", $7)):11:12:13 with yerrorbars pt 9 ps 1.6 lc rgb "black" title "float", \
     file using (is("lm", "no noise", $7)):11:12:13 with yerrorbars pt 7 lc rgb "#d62728" title "no noise", \
     file using (is("lm", "QAT", $7)):11:12:13 with yerrorbars pt 5 lc rgb "#ff7f0e" title "QAT", \
     file using (is("lm", "Quant-Noise", $7)):11:12:13 with yerrorbars pt 11 ps 1.4 lc rgb "#1f77b4" title "Quant-Noise", \
     file using (is("lm", "no noise", $7)):11:5 with labels offset 0,1 font ",8" notitle, \
     file using (strcol(2) eq "lm4" ? $7 : NaN):11:12:13 with yerrorbars pt 6 lc rgb "grey50" title "Table 2 (4 layers)"
unset multiplot
