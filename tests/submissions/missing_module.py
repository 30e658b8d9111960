# Imports a module the grading machine does not have.
import a_module_nobody_installed
