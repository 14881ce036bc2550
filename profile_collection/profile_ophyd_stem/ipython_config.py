# IPython configuration of the ophyd-stem console (startup/ files run in name order).
c = get_config()
c.InteractiveShellApp.exec_lines = []
c.TerminalIPythonApp.display_banner = False
