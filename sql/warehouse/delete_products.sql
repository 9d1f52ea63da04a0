-- Empty the catalogue before loading a different one (load-catalogue --replace).
delete from products
