"""Who people are: users and their keys, groups, spaces and grants, their variables."""
