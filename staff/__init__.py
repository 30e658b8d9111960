"""Course-staff tools: fixture builder, grader, student-kit builder. Not for students."""
