@echo off
rem Retouch daemon, started at login from the Startup folder. Made by `retouch service install`.
start "" /B "$pythonw" -m retouch serve
