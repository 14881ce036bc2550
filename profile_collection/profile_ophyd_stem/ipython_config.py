# IPython configuration of the ophyd-stem console (startup/ files run in name order).
c = get_config()  # noqa: F821
c.InteractiveShellApp.exec_lines = []
c.TerminalIPythonApp.display_banner = False
