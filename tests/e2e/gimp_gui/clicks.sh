#!/bin/sh
# What a user's hands do, for gimp_gui/driver.py: screenshot the Retouch dialog, press OK, then Ctrl+Z.
OUT=$1
id=""
for i in $(seq 1 120); do
    id=$(xdotool search --name "Retouch AI: denoise" 2>/dev/null | head -1)
    [ -n "$id" ] && break
    sleep 0.5
done
[ -n "$id" ] || { echo "no dialog" > "$OUT/clicks.log"; exit 1; }
sleep 2
import -window "$id" "$OUT/gimp-dialog.png"
import -window root "$OUT/gimp-screen.png"
xdotool windowfocus --sync "$id" 2>>"$OUT/clicks.log"
xdotool key --clearmodifiers Return
for i in $(seq 1 240); do
    [ -f "$OUT/added" ] && break
    sleep 0.5
done
main=$(xdotool search --name "GIMP\$" 2>/dev/null | head -1)
echo "main window: $main" >> "$OUT/clicks.log"
xdotool windowfocus --sync "$main" 2>>"$OUT/clicks.log"
sleep 1
xdotool key --clearmodifiers ctrl+z
sleep 3
touch "$OUT/undone"
