# Issue 24's answer as a plot, from convergence_table.py's rates.csv: per task, the paired
# difference from the no-noise model (mean ± standard error over seeds) of each model trained with
# Quant-Noise at rate p (p = 1: iPQ QAT), after iPQ by the built-in plan and by the plan with fewer
# centroids (solid), and in float before iPQ (dashed; not for QAT, whose float weights never ran
# without their centroids in training: the LM's reach 590 perplexity). Run by convergence.sh as:
# gnuplot -e "out='DIR'" convergence.gp. A task without rows yet leaves its panel out.
set datafile separator ","
file = out."/rates.csv"
count(task) = int(system(sprintf("awk -F, '$1 == \"%s\"' %s | wc -l", task, file)))
tasks = (count("image") > 0 ? "image" : "").(count("lm") > 0 ? " lm" : "")
panels = words(tasks)
if (panels == 0) { print "convergence.gp: no rates with 2 seeds yet"; exit }
set terminal pngcairo size 550*panels,480 font "sans,10"
set output out."/convergence.png"
# A task's rows of one scheme, the rates below 1 (a line) or QAT (a point of its own).
rows(task, scheme, qat) = sprintf("< awk -F, '$1 == \"%s\" && $2 == \"%s\" && ($3 == 1) == %d' %s", task, scheme, qat, file)
position(r) = (r == 0.025) ? 0 : (r == 0.05) ? 1 : (r == 0.1) ? 2 : (r == 0.2) ? 3 : 4
set xtics ("0.025" 0, "0.05" 1, "0.1" 2, "0.2" 3, "1 (QAT)" 4)
set xrange [-0.4:4.4]
set xlabel "Quant-Noise rate p in training"
set grid
set xzeroaxis lt -1 lw 1
set key below horizontal maxcols 2 font ",9"
set xlabel offset 0,0.3
set multiplot layout 1,panels
do for [task in tasks] {
  accuracy = (task eq "image")
  set title (accuracy ? "Fashion-MNIST, EfficientNet (higher is better)" : "KJV language model (lower is better)")
  set ylabel (accuracy ? "test accuracy minus no noise (points)" : "test perplexity minus no noise")
  plot rows(task, "ipq", 0) using (position($3)):7:8 with yerrorlines lw 2 pt 7 lc 1 title "after iPQ, built-in plan", \
       rows(task, "ipq", 1) using (position($3)):7:8 with yerrorbars lw 2 pt 7 lc 1 notitle, \
       rows(task, "ipq_fewer", 0) using (position($3)):7:8 with yerrorlines lw 2 pt 5 lc 2 title "after iPQ, up to 8x fewer centroids", \
       rows(task, "ipq_fewer", 1) using (position($3)):7:8 with yerrorbars lw 2 pt 5 lc 2 notitle, \
       rows(task, "ipq", 0) using (position($3)):5:6 with yerrorlines lw 1 dt 2 pt 6 lc rgb "grey40" title "float, before iPQ"
}
unset multiplot
